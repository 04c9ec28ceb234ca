package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/hashicorp/raft"
)

// snapshotVersion is the version of the snapshot format (the image as
// JSON, in an envelope). Version 2 added the ISR, ELR, partition epoch and
// cluster defaults; a version 1 snapshot loads with the ISR of
// PartitionState.normalize and the defaults at 1.
const snapshotVersion = 2

// FSM is the metadata image as raft's state machine. Apply and Restore run
// on raft's goroutine; readers take Image, a copy, at any time.
type FSM struct {
	mu      sync.RWMutex // guards im, changed
	im      *Image
	changed chan struct{} // closed and replaced on every change
	log     *slog.Logger
}

// NewFSM is an empty image.
func NewFSM(logger *slog.Logger) *FSM {
	if logger == nil {
		logger = slog.Default()
	}
	return &FSM{im: newImage(), changed: make(chan struct{}), log: logger}
}

// Image is a copy of the current image.
func (f *FSM) Image() *Image {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.im.clone()
}

// Index is the raft index of the last record applied.
func (f *FSM) Index() uint64 {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.im.Index
}

// View calls fn with the current image, under the FSM's read lock: for
// lookups on hot paths that must not copy the whole image. fn must not
// keep im or anything in it, nor change it.
func (f *FSM) View(fn func(im *Image)) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fn(f.im)
}

// Changed is closed at the next change of the image: wait on it, then read
// the image again.
func (f *FSM) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

func (f *FSM) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// Apply applies one committed raft entry. Entries other than commands
// (configuration changes, no-ops) only advance the index.
func (f *FSM) Apply(l *raft.Log) interface{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	defer f.notifyLocked()
	f.im.Index = l.Index
	if l.Type != raft.LogCommand {
		return Result{}
	}
	r, err := decodeRecord(l.Data)
	if err != nil {
		// Every node refuses the same bytes the same way, so the images
		// stay equal; the proposer sees the error.
		f.log.Error("cluster: metadata record not applied", "index", l.Index, "err", err)
		return Result{Err: err}
	}
	return f.im.apply(r)
}

// Snapshot captures a copy of the image; Persist writes it while Apply
// goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{im: f.Image()}, nil
}

// Restore replaces the image by a snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	im, err := readSnapshot(rc)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.im = im
	f.notifyLocked()
	return nil
}

type snapshotFile struct {
	V     int    `json:"v"`
	Image *Image `json:"image"`
}

func readSnapshot(r io.Reader) (*Image, error) {
	var s snapshotFile
	dec := json.NewDecoder(r)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("cluster: reading metadata snapshot: %w", err)
	}
	if s.V < 1 || s.V > snapshotVersion {
		return nil, fmt.Errorf("cluster: metadata snapshot version %d (this node knows up to %d)", s.V, snapshotVersion)
	}
	if s.Image == nil {
		return nil, fmt.Errorf("cluster: metadata snapshot without an image")
	}
	im := newImage()
	im.Index, im.NextProducerID, im.Defaults = s.Image.Index, s.Image.NextProducerID, s.Image.Defaults
	for k, v := range s.Image.Brokers {
		im.Brokers[k] = v
	}
	for k, v := range s.Image.Topics {
		for i := range v.Partitions {
			v.Partitions[i].normalize()
		}
		im.Topics[k] = v
	}
	for k, v := range s.Image.Mirror {
		im.Mirror[k] = v
	}
	for k, v := range s.Image.Deleted {
		im.Deleted[k] = v
	}
	im.Security = s.Image.Security // a snapshot from before security.go has none
	im.Security.init()
	return im, nil
}

type fsmSnapshot struct{ im *Image }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	err := json.NewEncoder(sink).Encode(snapshotFile{V: snapshotVersion, Image: s.im})
	if err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
