package log

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

// TestEpochModel runs random sequences of append, leader-epoch change,
// high-watermark advance and checkpoint, truncation, roll, reopen and
// reopen without the epoch file against a reference: the batches held
// (bytes, offsets, epoch), the epochs' start offsets, the high watermark
// and its checkpoint.
func TestEpochModel(t *testing.T) {
	type refBatch struct {
		data       []byte // as stored
		base, last int64
		epoch      int32
	}
	rapid.Check(t, func(rt *rapid.T) {
		dir := t.TempDir()
		open := func() (*Log, *Partition) {
			l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
			if err != nil {
				rt.Fatalf("open: %v", err)
			}
			p, err := l.Partition("m", 0)
			if err != nil {
				rt.Fatal(err)
			}
			return l, p
		}
		l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, Logger: quietLogger})
		if err != nil {
			rt.Fatal(err)
		}
		if _, err := l.CreateTopic("m", 1, map[string]string{ConfigIndexIntervalBytes: "64", ConfigFlushPolicy: "never"}); err != nil {
			rt.Fatal(err)
		}
		p, _ := l.Partition("m", 0)
		defer func() { l.Close() }()

		var (
			batches  []refBatch
			epochs   []EpochEntry // the reference cache
			leader   = int32(-1)
			hw, ckpt int64
		)
		end := func() int64 {
			if len(batches) == 0 {
				return 0
			}
			return batches[len(batches)-1].last + 1
		}
		// assign: a new epoch, larger than every known one, starts at off;
		// an epoch already started there is replaced.
		assign := func(e int32, off int64) {
			if len(epochs) > 0 && e <= epochs[len(epochs)-1].Epoch {
				return
			}
			for len(epochs) > 0 && epochs[len(epochs)-1].StartOffset >= off {
				epochs = epochs[:len(epochs)-1]
			}
			epochs = append(epochs, EpochEntry{e, off})
		}
		dropFrom := func(off int64) {
			for len(epochs) > 0 && epochs[len(epochs)-1].StartOffset >= off {
				epochs = epochs[:len(epochs)-1]
			}
		}
		// endOffsetFor, by its definition: the largest known epoch at or
		// below e, ending where the smallest epoch above e starts.
		endOffsetFor := func(e int32) (int32, int64) {
			if e < 0 {
				return -1, -1
			}
			below, above := int32(-1), int64(-1)
			for _, x := range epochs {
				if x.Epoch <= e {
					below = x.Epoch
				} else if above < 0 {
					above = x.StartOffset
				}
			}
			switch {
			case below == e && above < 0:
				return e, end()
			case above < 0:
				return -1, -1
			case below < 0:
				return e, above
			}
			return below, above
		}
		check := func(rt *rapid.T, full bool) {
			if p.EndOffset() != end() {
				rt.Fatalf("end offset %d, reference %d", p.EndOffset(), end())
			}
			if got := p.LeaderEpochs(); !(len(got) == 0 && len(epochs) == 0) && !reflect.DeepEqual(got, epochs) {
				rt.Fatalf("epochs %v, reference %v", got, epochs)
			}
			if p.HighWatermark() != hw {
				rt.Fatalf("high watermark %d, reference %d", p.HighWatermark(), hw)
			}
			for e := int32(-1); e <= 8; e++ {
				ge, goff, err := p.EndOffsetForEpoch(e)
				we, woff := endOffsetFor(e)
				if err != nil || ge != we || goff != woff {
					rt.Fatalf("end of epoch %d: %d %d %v, reference %d %d (epochs %v)", e, ge, goff, err, we, woff, epochs)
				}
			}
			if !full {
				return
			}
			for _, b := range batches {
				r, err := p.Read(b.base, 1, nil)
				if err != nil || len(r.Data) < len(b.data) || !bytes.Equal(r.Data[:len(b.data)], b.data) {
					rt.Fatalf("batch at %d differs: %v", b.base, err)
				}
			}
		}

		rt.Repeat(map[string]func(*rapid.T){
			"": func(rt *rapid.T) { check(rt, false) }, // after every action
			"append": func(rt *rapid.T) {
				n := rapid.IntRange(1, 5).Draw(rt, "records")
				recs := make([]Record, n)
				for j := range recs {
					recs[j] = Record{Value: bytes.Repeat([]byte{byte(j)}, rapid.IntRange(0, 60).Draw(rt, "size"))}
				}
				b := withEpoch(AppendBatch(nil, recs), -1) // the clients' usual value
				res, err := p.Append(b)
				if err != nil {
					rt.Fatal(err)
				}
				setBaseOffset(b, res.BaseOffset)
				if leader >= 0 {
					binary.BigEndian.PutUint32(b[offLeaderEpoch:], uint32(leader))
					assign(leader, res.BaseOffset)
				}
				batches = append(batches, refBatch{data: b, base: res.BaseOffset, last: res.LastOffset, epoch: leader})
			},
			"setLeaderEpoch": func(rt *rapid.T) {
				e := max(leader, 0) + int32(rapid.IntRange(0, 2).Draw(rt, "step"))
				if err := p.SetLeaderEpoch(e); err != nil {
					rt.Fatal(err)
				}
				leader = e
				assign(e, end())
			},
			"advanceHW": func(rt *rapid.T) {
				to := rapid.Int64Range(0, end()+3).Draw(rt, "to")
				p.AdvanceHighWatermark(to)
				hw = max(hw, min(to, end()))
			},
			"checkpointHW": func(rt *rapid.T) {
				if err := p.CheckpointHighWatermark(); err != nil {
					rt.Fatal(err)
				}
				ckpt = max(ckpt, hw) // flush.policy=never: durable is the end
			},
			"truncate": func(rt *rapid.T) {
				to := rapid.Int64Range(0, end()+1).Draw(rt, "to")
				got, err := p.TruncateTo(to)
				if to >= end() { // no batch to cut
					if err != nil || got != end() {
						rt.Fatalf("TruncateTo(%d) at the end %d: %d, %v", to, end(), got, err)
					}
					// An epoch noted at the end with nothing under it
					// goes, as in Kafka's truncateTo.
					dropFrom(end())
					return
				}
				cut := end()
				for i, b := range batches {
					if b.last >= to {
						cut = b.base
						if cut >= hw {
							batches = batches[:i]
						}
						break
					}
				}
				if cut < hw {
					if !errors.Is(err, ErrBelowHighWatermark) {
						rt.Fatalf("TruncateTo(%d) below the high watermark %d: %d, %v", to, hw, got, err)
					}
					return
				}
				if err != nil || got != cut {
					rt.Fatalf("TruncateTo(%d) = %d, %v, reference %d", to, got, err, cut)
				}
				dropFrom(cut)
			},
			"roll": func(rt *rapid.T) {
				if err := p.Roll(); err != nil {
					rt.Fatal(err)
				}
			},
			"reopen": func(rt *rapid.T) {
				l.Close() // checkpoints the high watermark
				ckpt = max(ckpt, hw)
				if rapid.Bool().Draw(rt, "without epoch file") {
					os.Remove(filepath.Join(dir, "m-0", epochFileName))
					// Rebuilt from the batches: an epoch set without
					// batches is not in them, and goes anyway (below).
					epochs = nil
					for _, b := range batches {
						if b.epoch >= 0 {
							assign(b.epoch, b.base)
						}
					}
				}
				l, p = open()
				leader = -1
				dropFrom(end())
				hw = min(ckpt, end())
				check(rt, true)
			},
		})
		check(rt, true)
	})
}
