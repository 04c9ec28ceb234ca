package mqtt

import (
	"runtime/debug"
	"sync/atomic"
	"time"
)

// Memory given back once a burst of connections has settled.
//
// Connecting a device makes garbage (its CONNECT and CONNACK, the session
// store's write, the presence record), and the runtime keeps the heap it
// grew to until the next collection: with every device idle nothing
// allocates, so that can be minutes away, and freed pages stay resident
// up to the heap goal even after it (the goal counts the goroutines'
// stacks, so with 10,000 connections it is about twice the live heap).
// Measured at 10,000 idle devices: 117 MiB of heap in use for about 60
// live. Once connects and disconnects have stopped for releaseQuiet after
// at least releaseChurn of them, the front end collects and returns the
// free memory to the operating system (debug.FreeOSMemory), once per
// burst: a full collection, about 50 ms of CPU at 10,000 connections.

// releaseChurn is the number of connects and disconnects after which a
// quiet moment releases memory.
const releaseChurn = 500

// releaseQuiet is how long connections must have stopped coming and going.
const releaseQuiet = 5 * time.Second

// churnTracker counts connects and disconnects since the last release.
type churnTracker struct {
	count    atomic.Int64
	last     atomic.Int64 // unix nanoseconds of the latest
	released atomic.Int64 // releases done
	quiet    atomic.Int64 // releaseQuiet (tests shorten it)
	min      atomic.Int64 // releaseChurn (tests lower it)
}

func (c *churnTracker) add() {
	c.count.Add(1)
	c.last.Store(time.Now().UnixNano())
}

// maybeRelease releases memory when a burst has settled; the sweep loop
// asks every second.
func (s *Server) maybeRelease(now time.Time) {
	c := &s.churn
	if c.count.Load() < c.min.Load() || now.UnixNano()-c.last.Load() < c.quiet.Load() {
		return
	}
	n := c.count.Swap(0)
	start := time.Now()
	debug.FreeOSMemory()
	c.released.Add(1)
	s.logger.Debug("mqtt: connections settled; free memory returned to the operating system",
		"connects_and_disconnects", n, "took", time.Since(start))
}
