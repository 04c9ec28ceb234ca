package mirror

import (
	"crypto/rand"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	flog "ferry/log"
)

func TestParseShares(t *testing.T) {
	got, err := ParseShares("2=20%, 1=30,0=50%")
	if err != nil {
		t.Fatal(err)
	}
	want := []Share{{2, 20}, {1, 30}, {0, 50}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if got, err := ParseShares(""); err != nil || got != nil {
		t.Fatalf("empty: %v, %v; want no shares", got, err)
	}
	for bad, names := range map[string]string{
		"2":                "2",
		"two=20%":          "two=20%",
		"2=twenty":         "2=twenty",
		"2=12.5%":          "2=12.5%",
		"10=5%":            "10=5%",
		"-1=5%":            "-1=5%",
		"2=0%":             "2=0%",
		"2=101%":           "2=101%",
		"2=20%,2=10%":      "2=10%",
		"1=60%, 2=50%":     "1=60%, 2=50%",
		"1=30%,2=30,3=41%": "1=30%,2=30,3=41%",
	} {
		_, err := ParseShares(bad)
		if err == nil {
			t.Errorf("ParseShares(%q) accepted", bad)
		} else if !strings.Contains(err.Error(), `"`+names+`"`) {
			t.Errorf("ParseShares(%q): %v; want it to name %q", bad, err, names)
		}
	}
}

// serve hands out n slots one at a time, each to the level the gate
// chooses. sizes gives the levels with a chunk waiting and their chunks'
// bytes; a level keeps a chunk waiting (a backlog). It returns the levels
// served in order.
func serve(g *gate, sizes map[int]int, n int) []int {
	var got []int
	for range n {
		g.waiting = [2 * numClasses]int{}
		for lvl := range sizes {
			g.waiting[lvl] = 1
		}
		g.free = 1
		lvl := g.next()
		g.grantLocked(lvl, sizes[lvl])
		got = append(got, lvl)
	}
	return got
}

// bytesOf sums the bytes served per class.
func bytesOf(served []int, sizes map[int]int) (perClass [numClasses]int, total int) {
	for _, lvl := range served {
		perClass[lvl/2] += sizes[lvl]
		total += sizes[lvl]
	}
	return perClass, total
}

// The scheduler's choice, step by step, with a memory so large that no
// credit reaches its bound: class 1 has 35%, class 2 15%, class 0 none; all
// three always have a 1000-byte chunk waiting. Credits after each choice,
// in bytes (class 1, class 2):
//
//	 1: no credit yet: strict priority, class 0   350, 150
//	 2: class 1, the lowest with credit          -300, 300
//	 3: class 2                                    50, -550
//	 4: class 1                                  -600, -400
//	 5: none has credit: class 0                 -250, -250
//	 6: class 0                                   100, -100
//	 7: class 1                                  -550, 50
//	 8: class 2                                  -200, -800
//	 9: class 0                                   150, -650
//	10: class 1                                  -500, -500
//	11, 12: class 0                              -150, -350; 200, -200
func TestGateSharesOrder(t *testing.T) {
	g := newGate(1, 1<<50, []Share{{Class: 1, Percent: 35}, {Class: 2, Percent: 15}}, nil)
	sizes := map[int]int{level(0, false): 1000, level(1, false): 1000, level(2, false): 1000}
	want := []int{0, 1, 2, 1, 0, 0, 1, 2, 0, 1, 0, 0}
	got := serve(g, sizes, len(want))
	for i := range want {
		if got[i]/2 != want[i] {
			t.Fatalf("classes served %v, want %v", classes(got), want)
		}
	}
	if g.credit[1] != 200*100 || g.credit[2] != -200*100 {
		t.Fatalf("credits %d, %d hundredths of a byte, want 20000, -20000", g.credit[1], g.credit[2])
	}

	// Without shares, the most urgent waiting level always goes.
	g = newGate(1, 1000, nil, nil)
	for _, lvl := range serve(g, sizes, 20) {
		if lvl != 0 {
			t.Fatalf("without shares, a slot went to level %d with level 0 waiting", lvl)
		}
	}
}

func classes(levels []int) []int {
	out := make([]int, len(levels))
	for i, l := range levels {
		out[i] = l / 2
	}
	return out
}

// Shares are of bytes, not chunks: class 2's chunks are a tenth of class
// 0's, so it needs about four chunks to class 0's one to have its 30%.
// Within a class, live chunks go before backfill.
func TestGateSharesAreOfBytes(t *testing.T) {
	sizes := map[int]int{level(0, false): 10_000, level(2, false): 1_000, level(2, true): 1_000}
	g := newGate(8, 10_000, []Share{{Class: 2, Percent: 30}}, nil)
	served := serve(g, sizes, 5000)
	perClass, total := bytesOf(served, sizes)
	if f := float64(perClass[2]) / float64(total); f < 0.299 || f > 0.31 {
		t.Fatalf("class 2 had %.4f of the bytes, want 0.30 to 0.31", f)
	}
	for _, lvl := range served {
		if lvl == level(2, true) {
			t.Fatal("a backfill chunk of class 2 went before its live chunks")
		}
	}

	// Each class its share at least, class 0 (none) the rest: 20% + 50%
	// + 30% of the link's bytes, with chunks of different sizes.
	sizes = map[int]int{level(0, false): 4000, level(1, true): 1000, level(3, false): 3000, level(9, false): 500}
	g = newGate(8, 4000, []Share{{Class: 1, Percent: 20}, {Class: 3, Percent: 50}, {Class: 9, Percent: 5}}, nil)
	perClass, total = bytesOf(serve(g, sizes, 5000), sizes)
	for c, want := range map[int]float64{1: 0.20, 3: 0.50, 9: 0.05} {
		if f := float64(perClass[c]) / float64(total); f < want-0.001 || f > want+0.01 {
			t.Errorf("class %d had %.4f of the bytes, want %.2f (+0.01)", c, f, want)
		}
	}
}

// A class back from idling catches up alone for a while, bounded by the
// memory (slots × chunk bytes): its credit is at most 30% × 8 chunks, and
// each of its chunks spends at least 70% of one net, so it has at most 4
// slots in a row; then it has its 30% and class 0 the rest. A class that had the link to
// itself is not held to account for it when class 0 comes back.
func TestGateShareCatchUpIsBounded(t *testing.T) {
	g := newGate(8, 1000, []Share{{Class: 2, Percent: 30}}, nil)
	serve(g, map[int]int{0: 1000}, 200) // class 2 idle
	both := map[int]int{0: 1000, 4: 1000}
	served := serve(g, both, 1000)
	alone := 0
	for alone < len(served) && served[alone] == 4 {
		alone++
	}
	if most := int(math.Ceil(0.3 * 8 / 0.7)); alone < 1 || alone > most {
		t.Fatalf("class 2 took %d slots in a row on coming back, want 1 to %d: %v", alone, most, classes(served[:10]))
	}
	perClass, total := bytesOf(served[alone:], both)
	if f := float64(perClass[2]) / float64(total); f < 0.299 || f > 0.31 {
		t.Fatalf("then class 2 had %.4f of the bytes, want its 30%%", f)
	}

	serve(g, map[int]int{4: 1000}, 200) // class 0 idle, class 2 has it all
	served = serve(g, both, 10)
	if first := slices.Index(served, 4); first < 0 || first > 4 {
		t.Fatalf("with class 0 back, class 2 waited for %v: held to account for the idle time", classes(served))
	}
}

// Through acquire and release: with one slot held by class 0, a chunk of
// class 2 (30%, none yet) takes the freed slot before class 0's next.
func TestGateServesShareFirst(t *testing.T) {
	g := newGate(1, 4096, []Share{{Class: 2, Percent: 30}}, nil)
	ctx := t.Context()
	if err := g.acquire(ctx, level(0, false), 4096); err != nil {
		t.Fatal(err)
	}
	got := make(chan int, 2)
	waiting := func(lvl int) func() bool {
		return func() bool { g.mu.Lock(); defer g.mu.Unlock(); return g.waiting[lvl] == 1 }
	}
	for _, lvl := range []int{level(0, false), level(2, false)} {
		go func() {
			if g.acquire(ctx, lvl, 4096) == nil {
				got <- lvl
			}
		}()
		waitFor(t, "the waiter to queue", waiting(lvl))
	}
	for _, want := range []int{level(2, false), level(0, false)} {
		g.release()
		if lvl := <-got; lvl != want {
			t.Fatalf("slot went to level %d, want %d", lvl, want)
		}
	}
}

// Class 0 (alarms, four partitions) has a large backlog and class 2
// (telemetry, one partition) one too. Over a capped link, with a 30% share
// class 2 has about 30% of the bytes acknowledged while both are backlogged
// and class 0 the rest; without shares, strict priority gives class 2
// next to nothing. Uncapped, the share holds too: the window is what the
// classes contend for.
func TestClassShareOnTheLink(t *testing.T) {
	for _, tc := range []struct {
		name     string
		rate     int
		shares   []Share
		min, max float64
	}{
		{"share", 400_000, []Share{{Class: 2, Percent: 30}}, 0.25, 0.45},
		{"strict", 400_000, nil, 0, 0.05},
		{"uncapped", 0, []Share{{Class: 2, Percent: 30}}, 0.25, 0.45},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const record = 1000 // bytes of each record, one per batch
			edgeLog := openLog(t, t.TempDir())
			produceRandom := func(topic string, partitions int32, n int) {
				if _, err := edgeLog.CreateTopic(topic, partitions, nil); err != nil {
					t.Fatal(err)
				}
				for p := range partitions {
					part, _ := edgeLog.Partition(topic, p)
					for range n {
						v := make([]byte, record)
						rand.Read(v)
						if _, err := part.Append(flog.AppendBatch(nil, []flog.Record{{Value: v, Timestamp: time.Now().UnixMilli()}})); err != nil {
							t.Fatal(err)
						}
					}
				}
			}
			produceRandom("alarms", 4, 400)
			produceRandom("telemetry", 1, 1600)
			c := startCenter(t, nil, "")
			e := startSenderWith(t, SenderOptions{Log: edgeLog, StatePath: filepath.Join(t.TempDir(), "mirror.db"), Center: c.addr,
				ChunkBytes: 4 << 10, RateLimit: tc.rate, Shares: tc.shares,
				Classes: []Class{{Pattern: "alarms", Class: 0}, {Pattern: "telemetry", Class: 2}}})
			acked := func() (alarms, telemetry int64) {
				for p := range int32(4) {
					alarms += e.sender.Acked("alarms", p)
				}
				return alarms, e.sender.Acked("telemetry", 0)
			}
			// Past the start, where every shipper takes a first slot.
			waitFor(t, "the backlog to start moving", func() bool { a, tl := acked(); return a+tl >= 100 })
			a0, t0 := acked()
			// About 2 s of the link.
			waitFor(t, "800 more records acknowledged", func() bool { a, tl := acked(); return a+tl >= a0+t0+800 })
			a1, t1 := acked()
			if a1 >= 1600 || t1 >= 1600 {
				t.Fatalf("a class ran out of backlog during the measurement (alarms %d, telemetry %d acknowledged): not contended", a1, t1)
			}
			f := float64(t1-t0) / float64(a1-a0+t1-t0)
			t.Logf("class 2 had %.3f of the %d records acknowledged", f, a1-a0+t1-t0)
			if f < tc.min || f > tc.max {
				t.Fatalf("class 2 had %.3f of the records acknowledged while both classes were backlogged, want %.2f to %.2f", f, tc.min, tc.max)
			}
		})
	}
}
