package log

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// TestModel runs random sequences of append, read, time lookup, roll, clock
// advance, retention (under a guard) and reopen against an in-memory model
// of each partition: the batches it should hold, with their offsets, bytes
// and timestamps.

type modelBatch struct {
	data    []byte // as stored: base offset set
	base    int64
	last    int64
	maxTs   int64
	recTs   []int64
	segBase int64 // base offset of the segment it was appended to
}

type modelPartition struct {
	batches []modelBatch // retained, in offset order
	end     int64
}

type fakeClock struct{ ms atomic.Int64 }

func (c *fakeClock) now() time.Time { return time.UnixMilli(c.ms.Load()) }

type floorGuard struct{ floor atomic.Int64 }

func (g *floorGuard) RetainFrom(string, int32) int64       { return g.floor.Load() }
func (g *floorGuard) EvictRank(string) int                 { return 0 }
func (g *floorGuard) WillDrop(string, int32, int64, int64) {}

func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		clock := &fakeClock{}
		clock.ms.Store(1_800_000_000_000)
		guard := &floorGuard{}
		guard.floor.Store(math.MaxInt64)
		open := func() *Log {
			l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Now: clock.now, Logger: quietLogger})
			if err != nil {
				rt.Fatalf("open: %v", err)
			}
			l.SetShipper(guard)
			return l
		}
		l := open()
		defer func() { l.Close() }()
		interval := rapid.SampledFrom([]string{"0", "64", "512", "4096"}).Draw(rt, "index.interval.bytes")
		if _, err := l.CreateTopic("m", 2, map[string]string{
			ConfigIndexIntervalBytes: interval, ConfigFlushPolicy: "never", ConfigSegmentMs: "3600000", ConfigRetentionMs: "-1",
		}); err != nil {
			rt.Fatal(err)
		}
		model := []*modelPartition{{}, {}}
		part := func(i int) *Partition {
			p, err := l.Partition("m", int32(i))
			if err != nil {
				rt.Fatal(err)
			}
			return p
		}

		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				i := rapid.IntRange(0, 1).Draw(rt, "partition")
				n := rapid.IntRange(1, 20).Draw(rt, "records")
				now := clock.ms.Load()
				recs := make([]Record, n)
				mb := modelBatch{maxTs: math.MinInt64}
				for j := range recs {
					ts := now - int64(rapid.IntRange(0, 3*3600*1000).Draw(rt, "age"))
					recs[j] = Record{
						Key:       []byte(rapid.StringN(0, 20, -1).Draw(rt, "key")),
						Value:     bytes.Repeat([]byte{byte(j)}, rapid.IntRange(0, 300).Draw(rt, "size")),
						Timestamp: ts,
					}
					mb.recTs = append(mb.recTs, ts)
					mb.maxTs = max(mb.maxTs, ts)
				}
				b := AppendBatch(nil, recs)
				res, err := part(i).Append(b)
				if err != nil {
					rt.Fatal(err)
				}
				m := model[i]
				if res.BaseOffset != m.end || res.LastOffset != m.end+int64(n)-1 {
					rt.Fatalf("append got offsets %d..%d, model says %d..", res.BaseOffset, res.LastOffset, m.end)
				}
				mb.data, mb.base, mb.last, mb.segBase = b, res.BaseOffset, res.LastOffset, res.Segment
				m.batches = append(m.batches, mb)
				m.end = res.LastOffset + 1
			},
			"read": func(rt *rapid.T) {
				i := rapid.IntRange(0, 1).Draw(rt, "partition")
				m := model[i]
				start := m.end
				if len(m.batches) > 0 {
					start = m.batches[0].base
				}
				off := rapid.Int64Range(start-2, m.end+2).Draw(rt, "offset")
				maxBytes := rapid.IntRange(1, 4000).Draw(rt, "maxBytes")
				r, err := part(i).Read(off, maxBytes, nil)
				if off < start || off > m.end {
					if !errors.Is(err, ErrOffsetOutOfRange) {
						rt.Fatalf("read at %d outside [%d, %d]: %v", off, start, m.end, err)
					}
					return
				}
				if err != nil {
					rt.Fatalf("read at %d: %v", off, err)
				}
				var want []byte
				for _, b := range m.batches {
					if b.last < off {
						continue
					}
					if len(want) > 0 && len(want)+len(b.data) > maxBytes {
						break
					}
					want = append(want, b.data...)
				}
				// A read stops at its segment's end; compare the prefix it
				// returned, which must be whole batches of the model's.
				if !bytes.HasPrefix(want, r.Data) || (len(want) > 0 && len(r.Data) == 0) {
					rt.Fatalf("read at %d max %d: got %d bytes, not a non-empty prefix of the model's %d", off, maxBytes, len(r.Data), len(want))
				}
				if len(r.Data) > maxBytes {
					if h, _ := ParseBatch(r.Data); int(h.Length) != len(r.Data) {
						rt.Fatalf("read returned %d bytes over max %d with more than the first batch", len(r.Data), maxBytes)
					}
				}
				if r.StartOffset != start || r.EndOffset != m.end {
					rt.Fatalf("read reports [%d, %d), model [%d, %d)", r.StartOffset, r.EndOffset, start, m.end)
				}
			},
			"offsetForTime": func(rt *rapid.T) {
				i := rapid.IntRange(0, 1).Draw(rt, "partition")
				target := clock.ms.Load() - int64(rapid.IntRange(-1000, 4*3600*1000).Draw(rt, "back"))
				wantOff, wantTs := int64(-1), int64(-1)
			search:
				for _, b := range model[i].batches {
					for j, ts := range b.recTs {
						if ts >= target {
							wantOff, wantTs = b.base+int64(j), ts
							break search
						}
					}
				}
				off, ts, err := part(i).OffsetForTime(target)
				if err != nil || off != wantOff || ts != wantTs {
					rt.Fatalf("OffsetForTime(%d) = %d/%d/%v, model %d/%d", target, off, ts, err, wantOff, wantTs)
				}
			},
			"roll": func(rt *rapid.T) {
				if err := part(rapid.IntRange(0, 1).Draw(rt, "partition")).Roll(); err != nil {
					rt.Fatal(err)
				}
			},
			"advanceClock": func(rt *rapid.T) {
				clock.ms.Add(int64(rapid.IntRange(0, 2*3600*1000).Draw(rt, "ms")))
			},
			"retention": func(rt *rapid.T) {
				age := rapid.SampledFrom([]string{"-1", "1800000", "7200000"}).Draw(rt, "retention.ms")
				size := rapid.SampledFrom([]string{"-1", "0", "2000", "20000"}).Draw(rt, "retention.bytes")
				if err := l.AlterConfigs("m", map[string]string{ConfigRetentionMs: age, ConfigRetentionBytes: size}, nil); err != nil {
					rt.Fatal(err)
				}
				floor := int64(math.MaxInt64)
				if rapid.Bool().Draw(rt, "guarded") {
					floor = rapid.Int64Range(0, 400).Draw(rt, "floor")
				}
				guard.floor.Store(floor)
				before := [2][]SegmentInfo{part(0).Segments(), part(1).Segments()}
				if _, err := l.EnforceRetention(); err != nil {
					rt.Fatal(err)
				}
				cfg, _ := l.TopicConfig("m")
				for i := range model {
					checkRetention(rt, model[i], before[i], part(i), cfg, floor, clock.ms.Load())
				}
			},
			"reopen": func(rt *rapid.T) {
				if err := l.Close(); err != nil {
					rt.Fatal(err)
				}
				l = open()
				// Segment bases of the model survive; nothing changes.
			},
			"": func(rt *rapid.T) {
				for i, m := range model {
					p := part(i)
					if p.EndOffset() != m.end {
						rt.Fatalf("partition %d end %d, model %d", i, p.EndOffset(), m.end)
					}
					start := m.end
					if len(m.batches) > 0 {
						start = m.batches[0].base
					}
					if p.StartOffset() != start {
						rt.Fatalf("partition %d start %d, model %d", i, p.StartOffset(), start)
					}
					var size int64
					for _, s := range p.Segments() {
						size += s.Size
					}
					if size != p.Size() {
						rt.Fatalf("Size() %d, segments hold %d", p.Size(), size)
					}
				}
			},
		})
	})
}

// checkRetention replays the retention rules over the segments as they were
// before the pass and checks the partition's new start and the model.
func checkRetention(rt *rapid.T, m *modelPartition, before []SegmentInfo, p *Partition, cfg TopicConfig, floor, nowMs int64) {
	type seg struct {
		base, end, size, maxTs int64
	}
	var segs []seg
	var total int64
	for k, s := range before {
		sg := seg{base: s.BaseOffset, end: s.NextOffset, size: s.Size, maxTs: -1}
		for _, b := range m.batches {
			if b.base >= sg.base && b.last < sg.end {
				sg.maxTs = max(sg.maxTs, b.maxTs)
			}
		}
		if k == len(before)-1 {
			sg.end = m.end
		}
		segs = append(segs, sg)
		total += s.Size
	}
	wantStart := segs[0].base
	for k := 0; k < len(segs); k++ {
		s := segs[k]
		active := k == len(segs)-1
		expired := cfg.RetentionAge >= 0 && s.maxTs >= 0 && s.maxTs < nowMs-cfg.RetentionAge.Milliseconds()
		tooBig := cfg.RetentionBytes >= 0 && !active && total-s.size >= cfg.RetentionBytes
		if s.size == 0 || s.end > floor || !(expired || tooBig) {
			break
		}
		total -= s.size
		wantStart = s.end
	}
	if got := p.StartOffset(); got != wantStart {
		rt.Fatalf("after retention start offset %d, rules say %d (segments %+v, floor %d)", got, wantStart, segs, floor)
	}
	if wantStart > segs[0].base && wantStart > floor {
		rt.Fatalf("this retention pass deleted offsets at or above the guard's floor %d", floor)
	}
	kept := m.batches[:0]
	for _, b := range m.batches {
		if b.base >= wantStart {
			kept = append(kept, b)
		}
	}
	m.batches = kept
	_ = fmt.Sprint
}
