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
// alarms do not queue behind a telemetry backlog. Class 1 is the default.
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

// EvictRank ranks a topic for the disk budget's drop-oldest policy: the
// least urgent class (the highest number) loses its data first.
func (o SenderOptions) EvictRank(topic string) int { return classOf(o.Classes, topic) }

// gate is the window of chunks in flight, handed out by level: a class's
// live chunks (level 2*class) before its backfill behind a live tail
// (2*class+1), before the next class.
type gate struct {
	mu      sync.Mutex
	free    int
	waiting [20]int
	wake    chan struct{}
}

// level is a chunk's place in the gate.
func level(class int, backfill bool) int {
	if backfill {
		return 2*class + 1
	}
	return 2 * class
}

func newGate(slots int) *gate { return &gate{free: slots, wake: make(chan struct{})} }

// acquire takes a slot for a chunk of level c once one is free and no
// chunk of a more urgent level is waiting.
func (g *gate) acquire(ctx context.Context, c int) error {
	g.mu.Lock()
	g.waiting[c]++
	for {
		urgent := false
		for i := 0; i < c; i++ {
			urgent = urgent || g.waiting[i] > 0
		}
		if g.free > 0 && !urgent {
			g.free--
			g.waiting[c]--
			g.mu.Unlock()
			return nil
		}
		wake := g.wake
		g.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			g.mu.Lock()
			g.waiting[c]--
			g.broadcastLocked()
			g.mu.Unlock()
			return ctx.Err()
		}
		g.mu.Lock()
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
