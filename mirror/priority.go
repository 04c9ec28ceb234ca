package mirror

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"
	"sync"
)

// Priority classes order the link: when a slot of the window frees, the
// waiting chunk of the most urgent class (the lowest number) takes it, so
// alarms do not queue behind a telemetry backlog, unless a class with a
// share (Share) has not had it recently. Class 1 is the default.
const defaultClass = 1

// Class maps topics (path.Match patterns) to a priority class, 0–9.
type Class struct {
	Pattern string
	Class   int
}

// ParseClasses reads "PATTERN=CLASS[,...]", e.g. "alarms*=0,telemetry=2".
func ParseClasses(s string) ([]Class, error) {
	var out []Class
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		pat, c, ok := strings.Cut(part, "=")
		n, err := strconv.Atoi(c)
		if !ok || err != nil || n < 0 || n > 9 {
			return nil, fmt.Errorf("priority %q: want TOPIC_PATTERN=CLASS with a class from 0 (first) to 9", part)
		}
		if _, err := path.Match(pat, ""); err != nil {
			return nil, fmt.Errorf("priority %q: %w", part, err)
		}
		out = append(out, Class{Pattern: pat, Class: n})
	}
	return out, nil
}

// classOf is a topic's class: the first pattern that matches.
func classOf(classes []Class, topic string) int {
	for _, c := range classes {
		if ok, _ := path.Match(c.Pattern, topic); ok {
			return c.Class
		}
	}
	return defaultClass
}

// EvictRank ranks a topic for the disk budget's drop-oldest policy
// (log.Shipper): the least urgent class (the highest number) loses its data
// first.
func (s *Sender) EvictRank(topic string) int { return classOf(s.opts.Classes, topic) }

// numClasses is how many priority classes there are: 0–9.
const numClasses = 10

// Share guarantees a class part of the link: Percent of the bytes the link
// carried recently, whenever the class has chunks waiting. A class may use
// more when the others are idle.
type Share struct {
	Class   int
	Percent int
}

// ParseShares reads "CLASS=PERCENT%[,...]", e.g. "2=20%,1=30%": class 2 is
// guaranteed 20% of the link, class 1 30%. The % is optional; percents are
// whole, from 1 to 100, and add up to 100 at most.
func ParseShares(s string) ([]Share, error) {
	var out []Share
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		c, p, ok := strings.Cut(part, "=")
		class, err := strconv.Atoi(strings.TrimSpace(c))
		if !ok || err != nil {
			return nil, fmt.Errorf("class share %q: want CLASS=PERCENT%%, e.g. 2=20%%", part)
		}
		pct, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(p), "%"))
		if err != nil {
			return nil, fmt.Errorf("class share %q: %q is not a whole percent", part, p)
		}
		sh := Share{Class: class, Percent: pct}
		if err := sh.check(); err != nil {
			return nil, fmt.Errorf("class share %q: %w", part, err)
		}
		for _, o := range out {
			if o.Class == class {
				return nil, fmt.Errorf("class share %q: class %d has a share already", part, class)
			}
		}
		out = append(out, sh)
	}
	if err := checkShares(out); err != nil {
		return nil, fmt.Errorf("class shares %q: %w", s, err)
	}
	return out, nil
}

func (sh Share) check() error {
	if sh.Class < 0 || sh.Class >= numClasses {
		return fmt.Errorf("class %d: want a class from 0 to 9", sh.Class)
	}
	if sh.Percent < 1 || sh.Percent > 100 {
		return fmt.Errorf("class %d: share %d%%: want 1%% to 100%%", sh.Class, sh.Percent)
	}
	return nil
}

// checkShares reports the first thing wrong with a list of shares: a class
// outside 0–9 or given twice, a percent outside 1–100, a total over 100%.
func checkShares(shares []Share) error {
	var seen [numClasses]bool
	sum := 0
	for _, sh := range shares {
		if err := sh.check(); err != nil {
			return err
		}
		if seen[sh.Class] {
			return fmt.Errorf("class %d has two shares", sh.Class)
		}
		seen[sh.Class] = true
		sum += sh.Percent
	}
	if sum > 100 {
		return fmt.Errorf("the shares add up to %d%%, more than 100%%", sum)
	}
	return nil
}

// gate is the window of chunks in flight and the link's pace. A slot
// goes to a waiting chunk chosen by level: a class's live chunks (level
// 2*class) before its backfill behind a live tail (2*class+1), before the
// next class; strict priority, unless shares say otherwise (below). The
// chosen chunk then waits for the link's tokens (pace, the rate cap) before
// the gate chooses again, so on a capped link the choice is made when the
// link can take the next chunk; were chunks to queue on the token bucket
// after taking slots, the bucket's first-come order would decide instead.
//
// The share scheduler: a deficit counter per class with a share. Shares
// are of the bytes the gate lets through, so a share means the same on an
// 8 KiB/s link and on an uncapped one. A class with share s holds a
// credit: every n bytes let through, of any class, earn it s × n, and its
// own n bytes spend n. When the gate chooses, the lowest class that has
// chunks waiting and credit left (it has had less than its share) goes;
// if none has, the most urgent waiting level does, as without shares. So a
// class that keeps chunks waiting has its share, and the urgent classes
// have the rest before anyone else. The credit is what makes "recently":
//   - it never exceeds s × memory (memory is a window's worth of chunks,
//     slots × chunk bytes), so a class back from idling catches up alone
//     for at most s × memory / (1-s) bytes (under half a window for 30%)
//     before the urgent classes come first again;
//   - a class never owes more than the chunk it last had, so what it took
//     while no one else was owed is not held against it later.
//
// The credits start at zero with each connection.
//
// A class whose chunks come from one partition has at most one chunk
// waiting (its shipper reads the next once this one is on its way), so
// between two of its chunks the gate may choose one of another class: on
// a busy link such a class has at most about half of it, whatever its
// share.
type gate struct {
	pace func(ctx context.Context, n int) error // waits for the link's tokens; nil: none

	mu      sync.Mutex
	free    int
	pacing  bool                // a chosen chunk waits for its tokens: the next choice waits for it
	waiting [2 * numClasses]int // chunks waiting, by level
	wake    chan struct{}       // closed and replaced when a waiter may go

	share  [numClasses]int64 // percent of the link guaranteed; 0: none
	credit [numClasses]int64 // hundredths of a byte the class is owed (< 0: owes)
	memory int64             // bytes: a class's credit is at most its share of it
}

// level is a chunk's place in the gate.
func level(class int, backfill bool) int {
	if backfill {
		return 2*class + 1
	}
	return 2 * class
}

// newGate makes a window of slots chunks of about chunkBytes. shares
// (checked by checkShares) may be nil: strict priority. pace waits until n
// bytes may go on the link; nil: uncapped.
func newGate(slots, chunkBytes int, shares []Share, pace func(ctx context.Context, n int) error) *gate {
	g := &gate{free: slots, pace: pace, wake: make(chan struct{}), memory: int64(slots) * int64(chunkBytes)}
	for _, sh := range shares {
		g.share[sh.Class] = int64(sh.Percent)
	}
	return g
}

// acquire takes a slot for a chunk of level lvl and n bytes once one is
// free, no chosen chunk is still waiting for its tokens, and the gate
// chooses lvl (next); then it waits for the chunk's tokens. On an error the
// chunk has no slot.
func (g *gate) acquire(ctx context.Context, lvl, n int) error {
	g.mu.Lock()
	g.waiting[lvl]++
	for {
		if g.free > 0 && !g.pacing && g.next() == lvl {
			g.grantLocked(lvl, n)
			if g.pace == nil {
				if g.free > 0 {
					g.broadcastLocked() // the choice may have changed
				}
				g.mu.Unlock()
				return nil
			}
			g.pacing = true
			g.mu.Unlock()
			err := g.pace(ctx, n)
			g.mu.Lock()
			g.pacing = false
			if err != nil {
				g.free++
			}
			g.broadcastLocked()
			g.mu.Unlock()
			return err
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			g.mu.Lock()
			g.waiting[lvl]--
			g.broadcastLocked()
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
}

// next is the level the gate chooses, -1 when nothing waits: the lowest
// waiting class with credit left, else the most urgent waiting level.
func (g *gate) next() int {
	for c := range numClasses {
		live, backfill := g.waiting[2*c], g.waiting[2*c+1]
		if g.share[c] == 0 || live+backfill == 0 || g.credit[c] <= 0 {
			continue
		}
		if live > 0 {
			return 2 * c
		}
		return 2*c + 1
	}
	for lvl, n := range g.waiting {
		if n > 0 {
			return lvl
		}
	}
	return -1
}

// grantLocked gives a slot to a waiting chunk of level lvl and n bytes and
// moves the credits: every class with a share earns its share of n (up to
// its share of memory), the chunk's class spends n (owing n at most).
func (g *gate) grantLocked(lvl, n int) {
	g.free--
	g.waiting[lvl]--
	for c, s := range g.share {
		if s > 0 {
			g.credit[c] = min(g.credit[c]+s*int64(n), s*g.memory)
		}
	}
	if c := lvl / 2; g.share[c] > 0 {
		g.credit[c] = max(g.credit[c]-100*int64(n), -100*int64(n))
	}
}

// release returns a slot.
func (g *gate) release() {
	g.mu.Lock()
	g.free++
	g.broadcastLocked()
	g.mu.Unlock()
}

func (g *gate) broadcastLocked() {
	close(g.wake)
	g.wake = make(chan struct{})
}
