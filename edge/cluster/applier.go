package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"

	flog "ferry/log"
)

// LocalLog is what the applier changes of this node's log: *log.Log.
type LocalLog interface {
	Topics() []flog.TopicInfo
	CreateTopicWithID(name string, id [16]byte, partitions int32, configs map[string]string) (flog.TopicInfo, error)
	DeleteTopic(name string) error
	AddPartitions(name string, total int32) error
	AlterConfigs(name string, set map[string]string, remove []string) error
}

// Reconciled says what one pass of the applier did.
type Reconciled struct {
	Created, Deleted, Grown, Altered []string
	// Foreign are local topics the cluster does not know (never created
	// through it, nor deleted by it): left alone, and reported.
	Foreign []string
	// Conflicts are topics whose local id is not the cluster's: left alone.
	Conflicts []string
	Errors    []error
}

// Reconcile makes the local log hold every topic of the image with the
// image's id, partition count and configs, and deletes the local copy of a
// topic the cluster deleted (its id among the image's tombstones). A topic
// is created on every node, led here or not, so offsets and ids are the
// same wherever a leader moves; partitions not led here stay empty.
// Internal topics (named __*) are the node's own and are not touched.
func Reconcile(im *Image, l LocalLog) Reconciled {
	var out Reconciled
	local := map[string]flog.TopicInfo{}
	for _, t := range l.Topics() {
		local[t.Name] = t
	}
	for _, name := range im.TopicNames() {
		t := im.Topics[name]
		id, err := parseID(t.ID)
		if err != nil {
			out.Errors = append(out.Errors, fmt.Errorf("topic %q: %w", name, err))
			continue
		}
		lt, ok := local[name]
		switch {
		case !ok:
			if _, err := l.CreateTopicWithID(name, id, int32(len(t.Partitions)), t.Configs); err != nil {
				out.Errors = append(out.Errors, fmt.Errorf("creating %q: %w", name, err))
				continue
			}
			out.Created = append(out.Created, name)
			continue
		case lt.ID != id:
			out.Conflicts = append(out.Conflicts, name)
			continue
		}
		if want := int32(len(t.Partitions)); lt.Partitions < want {
			if err := l.AddPartitions(name, want); err != nil {
				out.Errors = append(out.Errors, fmt.Errorf("growing %q: %w", name, err))
			} else {
				out.Grown = append(out.Grown, name)
			}
		}
		if !maps.Equal(lt.Configs, t.Configs) && !(len(lt.Configs) == 0 && len(t.Configs) == 0) {
			var remove []string
			for k := range lt.Configs {
				if _, keep := t.Configs[k]; !keep {
					remove = append(remove, k)
				}
			}
			if err := l.AlterConfigs(name, t.Configs, remove); err != nil {
				out.Errors = append(out.Errors, fmt.Errorf("configs of %q: %w", name, err))
			} else {
				out.Altered = append(out.Altered, name)
			}
		}
	}
	for name, lt := range local {
		if im.Topics[name] != nil || strings.HasPrefix(name, "__") {
			continue
		}
		if _, gone := im.Deleted[hex.EncodeToString(lt.ID[:])]; !gone {
			out.Foreign = append(out.Foreign, name)
			continue
		}
		if err := l.DeleteTopic(name); err != nil && !errors.Is(err, flog.ErrUnknownTopic) {
			out.Errors = append(out.Errors, fmt.Errorf("deleting %q: %w", name, err))
			continue
		}
		out.Deleted = append(out.Deleted, name)
	}
	return out
}

func parseID(s string) ([16]byte, error) {
	var id [16]byte
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 16 {
		return id, fmt.Errorf("topic id %q is not 16 bytes of hex", s)
	}
	copy(id[:], b)
	return id, nil
}

// Apply runs Reconcile at every change of the node's image until ctx ends;
// the node's assembly owns the goroutine that calls it. Each pass's work and
// troubles are logged, and WaitReconciled callers are told how far it got.
func (n *Node) Apply(ctx context.Context, l LocalLog) {
	for {
		changed := n.fsm.Changed()
		im := n.fsm.Image()
		r := Reconcile(im, l)
		logReconciled(n.log, r)
		n.reconciled.set(im.Index)
		select {
		case <-ctx.Done():
			return
		case <-n.stop:
			return
		case <-changed:
		}
	}
}

// WaitReconciled waits until the local log has followed the metadata up
// to index (a pass of Apply over an image at least that recent).
func (n *Node) WaitReconciled(ctx context.Context, index uint64) error {
	return n.waitUntil(ctx, n.reconciled.reached(index))
}

// followed is how far a local copy (the log, the device registry) has
// followed the image: the index of the last image applied, and a channel
// closed and replaced at each pass, for waitUntil.
type followed struct {
	mu    sync.Mutex
	index uint64
	ch    chan struct{}
}

func newFollowed() *followed { return &followed{ch: make(chan struct{})} }

// set records a pass over the image at index and wakes the waiters.
func (f *followed) set(index uint64) {
	f.mu.Lock()
	f.index = index
	close(f.ch)
	f.ch = make(chan struct{})
	f.mu.Unlock()
}

// reached is waitUntil's check for index.
func (f *followed) reached(index uint64) func() (bool, <-chan struct{}) {
	return func() (bool, <-chan struct{}) {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.index >= index, f.ch
	}
}

func logReconciled(l *slog.Logger, r Reconciled) {
	if len(r.Created)+len(r.Deleted)+len(r.Grown)+len(r.Altered) > 0 {
		l.Info("cluster: local log follows the metadata", "created", r.Created, "deleted", r.Deleted, "grown", r.Grown, "configs", r.Altered)
	}
	if len(r.Conflicts) > 0 {
		l.Error("cluster: local topics with another id than the cluster's are left alone and not served", "topics", r.Conflicts)
	}
	for _, err := range r.Errors {
		l.Error("cluster: applying metadata to the local log", "err", err)
	}
}

// Import proposes the node's local topics that the cluster does not know
// yet, once this broker is registered, each with its local id and every
// partition on this node: how a
// single node's data becomes node 1 of a new cluster, offsets and ids kept.
// A name the cluster already has with another id is an error, and nothing
// of that topic is changed.
func (n *Node) Import(ctx context.Context, l LocalLog) error {
	// The topics are placed on this broker: wait until it is registered.
	err := n.waitUntil(ctx, func() (bool, <-chan struct{}) {
		ch := n.fsm.Changed()
		registered := false
		n.fsm.View(func(im *Image) { registered = im.Brokers[n.cfg.NodeID] != nil })
		return registered, ch
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, t := range l.Topics() {
		if strings.HasPrefix(t.Name, "__") {
			continue
		}
		id := hex.EncodeToString(t.ID[:])
		im := n.fsm.Image()
		if _, deleted := im.Deleted[id]; deleted {
			continue // the cluster deleted it; the applier removes it here
		}
		if have := im.Topics[t.Name]; have != nil {
			if have.ID != id {
				errs = append(errs, fmt.Errorf("topic %q: the cluster has it with id %s, this node with %s", t.Name, have.ID, id))
			}
			continue
		}
		a := make([][]int32, t.Partitions)
		for i := range a {
			a[i] = []int32{n.cfg.NodeID}
		}
		res, err := n.Propose(ctx, Record{Op: OpCreateTopic, Topic: t.Name, TopicID: id, Configs: t.Configs, Assignment: a})
		if err == nil {
			err = res.Err
		}
		if err != nil && !errors.Is(err, ErrTopicExists) {
			errs = append(errs, fmt.Errorf("importing %q: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}
