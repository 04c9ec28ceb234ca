package mirror

import (
	"context"
	"strings"
	"time"

	"ferry/mirror/wire"
)

// headsEvery is how often an edge tells the center where its log ends
// (wire.Heads), from which the center works out each copy's lag.
const headsEvery = 5 * time.Second

// helloVersion is the protocol version the next session's hello speaks:
// wire.Version, or wire.MinVersion once a center refused the newer one
// (an older center: the edge then ships without reporting its ends).
func (s *Sender) helloVersion() uint16 {
	if s.oldCenter.Load() {
		return wire.MinVersion
	}
	return wire.Version
}

// refusedVersion notes a center that refused the hello's version, so the
// next session speaks the oldest one; it reports whether that was it.
func (s *Sender) refusedVersion(version uint16, msg string) bool {
	if version == wire.MinVersion || !strings.Contains(msg, "protocol version") {
		return false
	}
	s.oldCenter.Store(true)
	s.logger.Warn("mirror: the center speaks an older protocol; shipping without reporting this edge's ends (the center shows no copy lag)",
		"version", version, "center_said", msg)
	return true
}

// reportHeads tells the center where the announced partitions end, now
// and every headsEvery, until ctx ends.
func (l *link) reportHeads(ctx context.Context, parts []wire.PartRef) error {
	t := time.NewTicker(headsEvery)
	defer t.Stop()
	var buf []byte
	for {
		buf = l.s.heads(parts).Encode(buf)
		l.wmu.Lock()
		_, err := l.c.Write(buf)
		l.wmu.Unlock()
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// heads reads where each partition ends and the time of its oldest record
// the center has not acknowledged (as Status ages it).
func (s *Sender) heads(parts []wire.PartRef) *wire.Heads {
	h := &wire.Heads{Parts: make([]wire.Head, 0, len(parts))}
	for _, p := range parts {
		part, err := s.opts.Log.Partition(p.Topic, p.Partition)
		if err != nil {
			continue // deleted: the session ends soon (watchTopics)
		}
		hd := wire.Head{Topic: p.Topic, Partition: p.Partition, End: part.EndOffset(), Oldest: -1}
		if from := max(s.Acked(p.Topic, p.Partition), part.StartOffset()); from < hd.End {
			if at, err := part.AgedAt(from); err == nil {
				hd.Oldest = at
			}
		}
		h.Parts = append(h.Parts, hd)
	}
	return h
}
