package log

import (
	"bytes"
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

func TestTopicLifecycleAndReopen(t *testing.T) {
	dir := t.TempDir()
	l := openTestLog(t, Options{Dir: dir})
	info, err := l.CreateTopic("orders", 2, map[string]string{ConfigRetentionMs: "3600000"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		parts int32
		cfg   map[string]string
		want  error
	}{
		{"orders", 1, nil, ErrTopicExists},
		{"bad name", 1, nil, ErrInvalidTopic},
		{"orders_", 1, nil, nil},
		{"orders.", 1, nil, ErrInvalidTopic}, // collides with orders_ in metric names
		{"zero", 0, nil, ErrInvalidPartitions},
		{"cfg", 1, map[string]string{"retention.hours": "1"}, ErrInvalidConfig},
		{"cfg", 1, map[string]string{ConfigSegmentBytes: "10"}, ErrInvalidConfig},
		{"cfg", 1, map[string]string{ConfigFlushPolicy: "sometimes"}, ErrInvalidConfig},
	} {
		if _, err := l.CreateTopic(tc.name, tc.parts, tc.cfg); !errors.Is(err, tc.want) {
			t.Errorf("CreateTopic(%q, %d, %v) = %v, want %v", tc.name, tc.parts, tc.cfg, err, tc.want)
		}
	}
	if err := l.AddPartitions("orders", 1); !errors.Is(err, ErrInvalidPartitions) {
		t.Fatalf("shrinking: %v", err)
	}
	if err := l.AddPartitions("orders", 4); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Partition("orders", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Partition("orders", 4); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("partition 4: %v", err)
	}
	if err := l.AlterConfigs("orders", map[string]string{ConfigFlushPolicy: "always"}, []string{ConfigRetentionMs}); err != nil {
		t.Fatal(err)
	}
	if err := l.AlterConfigs("orders", map[string]string{"nope": "1"}, nil); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("bad alter: %v", err)
	}
	if err := l.DeleteTopic("orders_"); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteTopic("orders_"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("second delete: %v", err)
	}
	l.Close()

	l2 := openTestLog(t, Options{Dir: dir})
	got, err := l2.Topic("orders")
	if err != nil || got.ID != info.ID || got.Partitions != 4 {
		t.Fatalf("after reopen: %+v %v (id was %x)", got, err, info.ID)
	}
	cfg, _ := l2.TopicConfig("orders")
	if cfg.Flush != FlushAlways || cfg.RetentionAge != 7*24*time.Hour {
		t.Fatalf("configs after reopen: %+v", cfg)
	}
	vals, explicit, _ := l2.EffectiveConfigs("orders")
	if vals[ConfigFlushPolicy] != "always" || !explicit[ConfigFlushPolicy] || explicit[ConfigRetentionMs] {
		t.Fatalf("effective configs: %v %v", vals, explicit)
	}
	if names := l2.Topics(); len(names) != 1 || names[0].Name != "orders" {
		t.Fatalf("topics after reopen: %+v", names)
	}
}

func TestSecondOpenOfADirFails(t *testing.T) {
	dir := t.TempDir()
	openTestLog(t, Options{Dir: dir})
	if _, err := Open(Options{Dir: dir, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrDataDirLocked) {
		t.Fatalf("second Open: %v", err)
	}
}

// TestAlterConfigsTakesEffectLive: lowering segment.bytes makes the very
// next append roll.
func TestAlterConfigsTakesEffectLive(t *testing.T) {
	l := openTestLog(t, Options{})
	l.CreateTopic("t", 1, nil)
	p, _ := l.Partition("t", 0)
	big := AppendBatch(nil, []Record{{Value: bytes.Repeat([]byte("v"), 600<<10), Timestamp: time.Now().UnixMilli()}})
	p.Append(append([]byte(nil), big...))
	if n := len(p.Segments()); n != 1 {
		t.Fatalf("%d segments", n)
	}
	if err := l.AlterConfigs("t", map[string]string{ConfigSegmentBytes: "1048576"}, nil); err != nil {
		t.Fatal(err)
	}
	p.Append(append([]byte(nil), big...))
	if n := len(p.Segments()); n != 2 {
		t.Fatalf("%d segments after lowering segment.bytes, want a roll", n)
	}
	if err := l.AlterConfigs("t", map[string]string{ConfigMaxMessageBytes: "1000"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Append(append([]byte(nil), big...)); !errors.Is(err, ErrBatchTooLarge) {
		t.Fatalf("batch over max.message.bytes: %v", err)
	}
}

func TestAppendRejectsCorruptBatches(t *testing.T) {
	l := openTestLog(t, Options{})
	l.CreateTopic("t", 1, nil)
	p, _ := l.Partition("t", 0)
	good := testBatch(3, 1, "x")
	for name, b := range map[string][]byte{
		"flipped byte":  func() []byte { c := append([]byte(nil), good...); c[len(c)-3] ^= 1; return c }(),
		"truncated":     good[:len(good)-4],
		"trailing junk": append(append([]byte(nil), good...), 1, 2, 3),
		"header only":   good[:batchHeaderSize],
		"empty":         nil,
	} {
		if _, err := p.Append(b); !errors.Is(err, ErrCorruptBatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if p.EndOffset() != 0 {
		t.Fatalf("a corrupt batch was stored: end %d", p.EndOffset())
	}
}

func TestShipperPinsUnshippedSegments(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(1_800_000_000_000)
	guard := &floorGuard{}
	guard.floor.Store(0)
	l := openTestLog(t, Options{Now: clock.now})
	l.SetShipper(guard)
	l.CreateTopic("t", 1, map[string]string{ConfigRetentionMs: "1000"})
	p, _ := l.Partition("t", 0)
	for i := 0; i < 3; i++ {
		p.Append(testBatch(2, clock.ms.Load(), "x"))
		p.Roll()
	}
	clock.ms.Add(10_000) // everything expired
	if res, err := l.EnforceRetention(); err != nil || res.Segments != 0 || p.StartOffset() != 0 {
		t.Fatalf("guard at 0: deleted %+v, start %d, %v", res, p.StartOffset(), err)
	}
	guard.floor.Store(4) // segments [0,2) and [2,4) are shipped
	if res, err := l.EnforceRetention(); err != nil || res.Segments != 2 || p.StartOffset() != 4 {
		t.Fatalf("guard at 4: deleted %+v, start %d, %v", res, p.StartOffset(), err)
	}
	guard.floor.Store(math.MaxInt64)
	if _, err := l.EnforceRetention(); err != nil || p.StartOffset() != 6 {
		t.Fatalf("no guard: start %d, %v", p.StartOffset(), err)
	}
	if _, err := p.Read(3, 100, nil); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("read of deleted offset: %v", err)
	}
}

// TestRetentionAgesOutAnIdleActiveSegment: an expired active segment is
// rolled and deleted, so an idle topic does not keep old data forever.
func TestRetentionAgesOutAnIdleActiveSegment(t *testing.T) {
	clock := &fakeClock{}
	clock.ms.Store(1_800_000_000_000)
	l := openTestLog(t, Options{Now: clock.now})
	l.CreateTopic("t", 1, map[string]string{ConfigRetentionMs: "60000"})
	p, _ := l.Partition("t", 0)
	p.Append(testBatch(5, clock.ms.Load(), "x"))
	clock.ms.Add(61_000)
	if _, err := l.EnforceRetention(); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 5 || p.EndOffset() != 5 || p.Size() != 0 {
		t.Fatalf("after retention: start %d end %d size %d", p.StartOffset(), p.EndOffset(), p.Size())
	}
	if res, err := p.Append(testBatch(1, clock.ms.Load(), "y")); err != nil || res.BaseOffset != 5 {
		t.Fatalf("append after: %+v %v", res, err)
	}
}

// TestConcurrentAppendsAndReads runs appenders on several partitions and
// readers following them, under -race; every reader sees dense, intact
// batches, and Wait wakes them.
func TestConcurrentAppendsAndReads(t *testing.T) {
	l := openTestLog(t, Options{})
	l.CreateTopic("t", 4, map[string]string{ConfigSegmentBytes: "1048576", ConfigIndexIntervalBytes: "256"})
	const perPartition = 300
	var wg sync.WaitGroup
	for part := int32(0); part < 4; part++ {
		p, _ := l.Partition("t", part)
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := 0; i < perPartition; i++ {
				if _, err := p.Append(testBatch(1+i%4, int64(i), "c")); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 49 {
					p.Roll()
				}
			}
		}()
		go func() {
			defer wg.Done()
			off, batches := int64(0), 0
			for batches < perPartition {
				wait := p.Wait()
				r, err := p.Read(off, 4096, nil)
				if err != nil {
					t.Error(err)
					return
				}
				if len(r.Data) == 0 {
					select {
					case <-wait:
					case <-time.After(10 * time.Second):
						t.Error("reader not woken by appends")
						return
					}
					continue
				}
				for b := r.Data; len(b) > 0; {
					h, err := ParseBatch(b)
					if err != nil || h.BaseOffset != off {
						t.Errorf("read at %d: batch at %d, %v", off, h.BaseOffset, err)
						return
					}
					off = h.LastOffset() + 1
					b = b[h.Length:]
					batches++
				}
			}
		}()
	}
	wg.Wait()
}
