package replica_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/edge/replica"
	flog "ferry/log"
	"ferry/log/logtest"
)

// dyingDisk is a power-cut filesystem whose power goes, once armed, at the
// first fsync of a segment of t-0: that fsync fails, as every change after
// it, and the files are what was durable before it. The process goes on
// until the test stops it (the disk died first, then the machine).
type dyingDisk struct {
	*logtest.PowerCutFS
	t     testing.TB
	armed atomic.Bool
}

func (d *dyingDisk) OpenFile(name string, flag int, perm fs.FileMode) (flog.File, error) {
	f, err := d.PowerCutFS.OpenFile(name, flag, perm)
	if err != nil || !strings.HasSuffix(name, ".log") || filepath.Base(filepath.Dir(name)) != topic+"-0" {
		return f, err
	}
	return dyingFile{f, d}, nil
}

type dyingFile struct {
	flog.File
	d *dyingDisk
}

func (f dyingFile) Sync() error {
	if f.d.armed.Load() {
		f.d.Cut(f.d.t)
	}
	return f.File.Sync()
}

// ack is what the producer was told of one record, and what the metadata
// said when it was told.
type ack struct {
	offset     int64
	leader     int32 // t-0's leader then
	followerIn bool  // node 2 in t-0's in-sync set then
}

// TestPowerCutFollower is scenario 9 of the replicated center, in one
// process: three replicas of t-0 (min ISR 2) under acks=all load from an
// idempotent producer; follower 2's disk dies at one of its fsyncs (its
// power-cut filesystem reverts every file to its last fsync and fails
// everything after), the leader drops it from the in-sync set, and it is
// powered off; later the leader's power is cut too and follower 3 leads.
// Both are reopened from what survived, rejoin and catch up.
//
// What docs/durability.md promises, checked on the logs as they come back,
// before they fetch anything: the leader held every record it acknowledged
// durably (flush.policy); with DurableFollowers, follower 2 held durably
// every record acknowledged while it was in the in-sync set, so losing the
// power of a majority (nodes 1 and 2) loses nothing acknowledged; without
// it, follower 2's copy may lack what its page cache held, but what it
// kept is the leader's log, byte for byte. Either way no high-watermark
// checkpoint is above the end of what survived, and after catching up
// every replica holds every acknowledged record exactly once, at its
// offset, byte-identical to the new leader's log.
func TestPowerCutFollower(t *testing.T) {
	for _, durable := range []bool{false, true} {
		t.Run(fmt.Sprintf("durable-followers=%v", durable), func(t *testing.T) { powerCutFollower(t, durable) })
	}
}

func powerCutFollower(t *testing.T, durable bool) {
	leaderDisk := logtest.NewPowerCutFS()
	followerDisk := &dyingDisk{PowerCutFS: logtest.NewPowerCutFS(), t: t}
	// flush.ms=1000: a follower without DurableFollowers leaves up to a
	// second of copied records in its page cache.
	c := newClusterOn(t, 500*time.Millisecond, durable, map[string]string{flog.ConfigFlushMs: "1000"},
		map[int32]flog.FS{1: leaderDisk, 2: followerDisk})
	prod := c.client(1, kgo.SeedBrokers(c.nodes[1].addr, c.nodes[3].addr), kgo.ProducerLinger(time.Millisecond),
		kgo.RecordRetries(1<<20), kgo.MaxBufferedRecords(64), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.MetadataMinAge(50*time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 20 * time.Millisecond }))

	var mu sync.Mutex
	acked := map[string]ack{}
	var failures []error
	count := func(cond func(ack) bool) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, a := range acked {
			if cond(a) {
				n++
			}
		}
		return n
	}
	all := func(ack) bool { return true }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loadDone := make(chan struct{})
	go func() { // the load, until cancel
		defer close(loadDone)
		for i := 0; ctx.Err() == nil; i++ {
			v := "p" + strconv.Itoa(i)
			prod.Produce(ctx, &kgo.Record{Value: []byte(v)}, func(r *kgo.Record, err error) {
				a := c.assignment()
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if ctx.Err() == nil {
						failures = append(failures, err)
					}
					return
				}
				acked[v] = ack{offset: r.Offset, leader: a.Leader, followerIn: slices.Contains(a.ISR, 2)}
			})
		}
	}()
	atLeast := func(what string, n int, cond func(ack) bool) {
		t.Helper()
		want := count(cond) + n
		poll(t, fmt.Sprintf("%d acknowledgements %s", n, what), func() bool { return count(cond) >= want })
	}

	atLeast("with every replica in sync", 300, all)
	// Follower 2's disk dies at its next fsync of t-0's data; it goes on
	// running (fetching, failing to append) until the leader drops it.
	followerDisk.armed.Store(true)
	poll(t, "follower 2's disk to die", followerDisk.IsCut)
	c.waitISR(1, 3)
	c.nodes[2].stop() // and now its power
	atLeast("with follower 2 out of the in-sync set", 200, all)

	// The leader's power goes; follower 3, the one in-sync replica left,
	// leads (the controller fences node 1 and elects from the ISR).
	leaderDisk.Cut(t)
	c.nodes[1].stop()
	c.change(func(a *replica.Assignment) { a.Leader, a.LeaderEpoch, a.ISR = 3, 2, []int32{3} })
	c.waitLeader(3, 2)

	// The power comes back: nodes 1 and 2 reopen what survived.
	mu.Lock()
	before := maps.Clone(acked)
	mu.Unlock()
	leaderEnd := c.nodes[3].part.EndOffset()
	newLeaderLog := contents(t, c.nodes[3].part)
	lostOnFollower := 0
	for _, id := range []int32{1, 2} {
		n := c.openNode(id, c.nodes[id].dir, nil)
		p := n.part
		if ck := p.CheckpointedHighWatermark(); ck > p.EndOffset() {
			t.Errorf("node %d's high-watermark checkpoint %d is above the end %d of what survived", id, ck, p.EndOffset())
		}
		data := contents(t, p)
		if !bytes.HasPrefix(newLeaderLog, data[:min(len(data), len(newLeaderLog))]) {
			t.Errorf("node %d kept bytes the new leader's log does not have at the same place", id)
		}
		held := map[string]int64{}
		for _, r := range records(t, data) {
			held[r.value] = r.offset
		}
		for v, a := range before {
			off, ok := held[v]
			if ok && off != a.offset {
				t.Errorf("node %d holds %s at %d, acknowledged at %d", id, v, off, a.offset)
			}
			switch {
			case ok:
			case id == 1 && a.leader == 1:
				t.Errorf("leader 1 lost %s (offset %d), which it acknowledged, in its power cut", v, a.offset)
			case id == 2 && a.followerIn && durable:
				t.Errorf("follower 2 lost %s (offset %d), acknowledged while it was in sync with durable followers, in its power cut", v, a.offset)
			case id == 2 && a.followerIn:
				lostOnFollower++
			}
		}
		t.Logf("node %d: %d of %d acknowledged records survived; ends at %d (the new leader at %d), high-watermark checkpoint %d",
			id, len(held), len(before), p.EndOffset(), leaderEnd, p.CheckpointedHighWatermark())
	}
	t.Logf("follower 2 lost %d records acknowledged while it was in sync (allowed without durable followers)", lostOnFollower)
	if t.Failed() {
		t.FailNow()
	}

	// Both rejoin; the load goes on through the new leader.
	c.nodes[1].startManager()
	c.nodes[2].startManager()
	poll(t, "nodes 1 and 2 back in the in-sync set", func() bool {
		isr := slices.Clone(c.assignment().ISR)
		slices.Sort(isr)
		return slices.Equal(isr, []int32{1, 2, 3})
	})
	atLeast("led by node 3", 200, func(a ack) bool { return a.leader == 3 })
	cancel()
	<-loadDone
	fctx, fcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer fcancel()
	prod.Flush(fctx)
	mu.Lock()
	defer mu.Unlock()
	if len(failures) > 0 {
		t.Logf("%d produces failed (not acknowledged), the first: %v", len(failures), failures[0])
	}
	c.waitIdentical(3)
	for id := int32(1); id <= 3; id++ {
		p := c.nodes[id].part
		seen := map[string]int64{}
		for _, r := range records(t, contents(t, p)) {
			if prev, dup := seen[r.value]; dup {
				t.Fatalf("node %d holds %s twice, at %d and %d", id, r.value, prev, r.offset)
			}
			seen[r.value] = r.offset
		}
		for v, a := range acked {
			if off, ok := seen[v]; !ok || off != a.offset {
				t.Fatalf("node %d: %s acknowledged at %d, held at %d (present %v)", id, v, a.offset, off, ok)
			}
		}
		if ck := p.CheckpointedHighWatermark(); ck > p.EndOffset() {
			t.Fatalf("node %d's high-watermark checkpoint %d is above its end %d", id, ck, p.EndOffset())
		}
	}
	t.Logf("%d records acknowledged, all on every replica", len(acked))
}
