package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// withEpoch returns a copy of batch with PartitionLeaderEpoch set (outside
// the CRC, so the batch stays valid).
func withEpoch(batch []byte, epoch int32) []byte {
	b := append([]byte(nil), batch...)
	binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(epoch))
	return b
}

func epochOf(t *testing.T, p *Partition, off int64) int32 {
	t.Helper()
	r, err := p.Read(off, 1, nil)
	if err != nil || len(r.Data) == 0 {
		t.Fatalf("read %d: %v", off, err)
	}
	return int32(binary.BigEndian.Uint32(r.Data[offLeaderEpoch:]))
}

// A node alone stores bytes 12-15 as the client sent them; once a leader
// epoch is set, Append stamps it there and changes nothing else but the
// base offset.
func TestAppendStampsLeaderEpoch(t *testing.T) {
	l := openTestLog(t, Options{})
	l.CreateTopic("e", 1, nil)
	p, _ := l.Partition("e", 0)

	client := withEpoch(testBatch(2, 1000, "a"), 0x01020304)
	if _, err := p.Append(append([]byte(nil), client...)); err != nil {
		t.Fatal(err)
	}
	r, _ := p.Read(0, 1<<20, nil)
	if !bytes.Equal(r.Data, client) {
		t.Fatal("a node alone changed the batch's bytes")
	}
	if got := p.LeaderEpochs(); len(got) != 0 {
		t.Fatalf("client values taken for leader epochs: %v", got)
	}

	if err := p.SetLeaderEpoch(5); err != nil {
		t.Fatal(err)
	}
	b := testBatch(3, 2000, "b")
	if _, err := p.Append(append([]byte(nil), b...)); err != nil {
		t.Fatal(err)
	}
	r, _ = p.Read(2, 1<<20, nil)
	want := withBase(withEpoch(b, 5), 2)
	if !bytes.Equal(r.Data, want) {
		t.Fatal("the stored batch differs from the client's in more than base offset and leader epoch")
	}
	if _, err := ValidateBatch(r.Data); err != nil {
		t.Fatalf("stamped batch invalid: %v", err)
	}
	if got, want := p.LeaderEpochs(), []EpochEntry{{5, 2}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("epochs %v, want %v", got, want)
	}
	if err := p.SetLeaderEpoch(4); !errors.Is(err, ErrStaleLeaderEpoch) {
		t.Fatalf("older epoch: %v", err)
	}
}

// A copy keeps the epochs the source stamped and learns where each starts.
func TestAppendAtKeepsLeaderEpoch(t *testing.T) {
	l := openTestLog(t, Options{})
	l.CreateTopic("c", 1, nil)
	p, _ := l.Partition("c", 0)
	b1 := withBase(withEpoch(testBatch(2, 1, "x"), 3), 0)
	b2 := withBase(withEpoch(testBatch(2, 2, "y"), 7), 2)
	if _, err := p.AppendAt(append([]byte(nil), b1...), append([]byte(nil), b2...)); err != nil {
		t.Fatal(err)
	}
	r, _ := p.Read(0, 1<<20, nil)
	if !bytes.Equal(r.Data, append(append([]byte(nil), b1...), b2...)) {
		t.Fatal("AppendAt changed the source's bytes")
	}
	if got, want := p.LeaderEpochs(), []EpochEntry{{3, 0}, {7, 2}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("epochs %v, want %v", got, want)
	}
}

// Kafka's LeaderEpochFileCache.endOffsetFor, case by case.
func TestEpochCacheEndOffsetFor(t *testing.T) {
	c := epochCache{entries: []EpochEntry{{2, 10}, {4, 30}, {7, 50}}}
	for _, tc := range []struct {
		epoch      int32
		wantE      int32
		wantOffset int64
	}{
		{-1, -1, -1}, // undefined
		{1, 1, 10},   // older than any: ends where the first begins
		{2, 2, 30},
		{3, 2, 30}, // unknown, between: the one below, ending where the next begins
		{4, 4, 50},
		{7, 7, 99}, // the latest: the log end
		{8, -1, -1},
	} {
		e, off := c.endOffsetFor(tc.epoch, 99)
		if e != tc.wantE || off != tc.wantOffset {
			t.Errorf("endOffsetFor(%d) = %d, %d, want %d, %d", tc.epoch, e, off, tc.wantE, tc.wantOffset)
		}
	}
	// assign: an epoch older than the latest is ignored; a newer one at a
	// lower offset cuts what it contradicts.
	if c.assign(5, 40) || c.assign(3, 60) {
		t.Fatalf("an older epoch was assigned: %v", c.entries)
	}
	s := epochCache{entries: []EpochEntry{{2, 10}, {4, 30}, {7, 50}}}
	s.truncateFromStart(35)
	if !reflect.DeepEqual(s.entries, []EpochEntry{{4, 35}, {7, 50}}) {
		t.Fatalf("truncateFromStart(35): %v", s.entries)
	}
	s.truncateFromStart(5)
	if !reflect.DeepEqual(s.entries, []EpochEntry{{4, 35}, {7, 50}}) {
		t.Fatalf("truncateFromStart(5): %v", s.entries)
	}
	if c.assign(9, 35) != true || !reflect.DeepEqual(c.entries, []EpochEntry{{2, 10}, {4, 30}, {9, 35}}) {
		t.Fatalf("assign(9, 35): %v", c.entries)
	}
}

// The checkpoint survives a reopen; missing or damaged, it is rebuilt from
// the batches to the same entries; entries past the end (written before a
// crash kept the batches) are dropped.
func TestEpochCheckpointRebuild(t *testing.T) {
	dir := t.TempDir()
	open := func() (*Log, *Partition) {
		l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
		if err != nil {
			t.Fatal(err)
		}
		p, err := l.Partition("r", 0)
		if err != nil {
			t.Fatal(err)
		}
		return l, p
	}
	l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("r", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("r", 0)
	for i, epoch := range []int32{1, 1, 1, 3, 3, 6, 6, 6, 6} {
		if i == 0 || epoch != []int32{1, 1, 1, 3, 3, 6, 6, 6, 6}[i-1] {
			if err := p.SetLeaderEpoch(epoch); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Append(testBatch(3, int64(i), "v")); err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			p.Roll()
		}
	}
	want := []EpochEntry{{1, 0}, {3, 9}, {6, 15}}
	if got := p.LeaderEpochs(); !reflect.DeepEqual(got, want) {
		t.Fatalf("epochs %v, want %v", got, want)
	}
	if len(p.Segments()) < 3 {
		t.Fatalf("want several segments, have %d", len(p.Segments()))
	}
	// A new epoch with no batch yet, then a crash: its entry is past the end.
	if err := p.SetLeaderEpoch(8); err != nil {
		t.Fatal(err)
	}
	l.Close()
	path := filepath.Join(p.Dir(), epochFileName)
	b, _ := os.ReadFile(path)
	if string(b) != "0\n4\n1 0\n3 9\n6 15\n8 27\n" {
		t.Fatalf("checkpoint file %q", b)
	}

	l, p = open()
	if got := p.LeaderEpochs(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen: epochs %v, want %v", got, want)
	}
	l.Close()
	// Missing, the file is rebuilt only when the epochs are first needed:
	// a node alone, which never asks, opens as fast as before.
	os.Remove(path)
	l, p = open()
	l.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the epoch file was rebuilt though nothing asked: %v", err)
	}
	for _, damage := range []func(){
		func() { os.Remove(path) },
		func() { os.WriteFile(path, []byte("0\n3\n1 0\n3 9\n"), 0o644) }, // count says more
		func() { os.WriteFile(path, []byte("0\n2\n3 9\n1 0\n"), 0o644) }, // not increasing
		func() { os.WriteFile(path, []byte("0\n99999999999\n"), 0o644) },
	} {
		damage()
		l, p = open()
		if got := p.LeaderEpochs(); !reflect.DeepEqual(got, want) {
			t.Fatalf("rebuilt: epochs %v, want %v", got, want)
		}
		if e, off, _ := p.EndOffsetForEpoch(3); e != 3 || off != 15 {
			t.Fatalf("end of epoch 3: %d %d", e, off)
		}
		l.Close()
	}
}

// A gap batch carries no epoch (-1), unless this partition leads: then
// its own epoch, as any batch it writes.
func TestAppendGapLeaderEpoch(t *testing.T) {
	l := openTestLog(t, Options{Logger: quietLogger})
	l.CreateTopic("g", 1, nil)
	p, _ := l.Partition("g", 0)
	if _, err := p.AppendGap(0, 4, 1000); err != nil {
		t.Fatal(err)
	}
	if e := epochOf(t, p, 0); e != -1 {
		t.Fatalf("gap of a partition with no epoch carries %d", e)
	}
	if err := p.SetLeaderEpoch(2); err != nil {
		t.Fatal(err)
	}
	if _, err := p.AppendGap(5, 9, 1000); err != nil {
		t.Fatal(err)
	}
	if e := epochOf(t, p, 5); e != 2 {
		t.Fatalf("gap of a leader at epoch 2 carries %d", e)
	}
	if got, want := p.LeaderEpochs(), []EpochEntry{{2, 5}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("epochs %v, want %v", got, want)
	}
}
