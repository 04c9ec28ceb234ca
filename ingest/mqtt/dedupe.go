package mqtt

import (
	"strconv"
	"sync"
	"time"

	flog "ferry/log"
)

// A device whose PUBACK is lost (a flaky link) retransmits the publish with
// the DUP flag and the same packet id once it reconnects to its session.
// The dedupe table remembers, per session (client id), the last publishes
// stored under each packet id, so such a retransmission is acknowledged
// again without being stored twice.
//
// A client can only retransmit a publish it has not seen acknowledged, and
// it never has more than the server's Receive Maximum of those, so a window
// of the last window entries per session is enough.

// stored is where one QoS 1/2 publish went.
type stored struct {
	hash   uint64
	part   *flog.Partition
	offset int64
	seq    uint64 // position in the session's window, to expire it
}

type sessionPublishes struct {
	byID map[uint16]stored
	ring []uint16 // packet ids in publish order; ring[seq%len] was seq
	seq  uint64
}

type dedupe struct {
	window int
	mu     sync.Mutex
	bySess map[string]*sessionPublishes
}

func newDedupe(window int) *dedupe {
	return &dedupe{window: window, bySess: map[string]*sessionPublishes{}}
}

// lookup returns the stored publish a retransmission of (id, hash) in
// session client refers to.
func (d *dedupe) lookup(client string, id uint16, hash uint64) (stored, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.bySess[client]
	if s == nil {
		return stored{}, false
	}
	st, ok := s.byID[id]
	if !ok || st.hash != hash {
		return stored{}, false
	}
	return st, true
}

// remember records that the publish (id, hash) of session client was
// appended at part/offset.
func (d *dedupe) remember(client string, id uint16, hash uint64, part *flog.Partition, offset int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.bySess[client]
	if s == nil {
		s = &sessionPublishes{byID: map[uint16]stored{}}
		d.bySess[client] = s
	}
	if len(s.ring) < d.window {
		s.ring = append(s.ring, id)
	} else {
		slot := s.seq % uint64(d.window)
		old := s.ring[slot]
		if st, ok := s.byID[old]; ok && st.seq+uint64(d.window) <= s.seq {
			delete(s.byID, old)
		}
		s.ring[slot] = id
	}
	s.byID[id] = stored{hash: hash, part: part, offset: offset, seq: s.seq}
	s.seq++
}

// forget drops a session's publishes: the session ended (clean start, or
// it expired), so its packet ids start afresh.
func (d *dedupe) forget(client string) {
	d.mu.Lock()
	delete(d.bySess, client)
	d.mu.Unlock()
}

// sessions returns how many sessions have entries (for tests).
func (d *dedupe) sessions() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.bySess)
}

// recoverDedupe refills the dedupe table from the log after a restart. A
// publish whose acknowledgement a crash (or a restart) prevented was
// appended shortly before it: its acknowledgement was due within the
// topic's flush interval. So the records of the last window before each
// partition's newest one are read again, and those of QoS 1/2 publishes
// (they carry their packet id) are remembered for their sessions.
func (s *Server) recoverDedupe(window time.Duration) (int, error) {
	topics := map[string]bool{}
	for _, c := range s.router.rules {
		topics[c.Topic] = true
	}
	if s.router.def != nil {
		topics[s.router.def.Topic] = true
	}
	n := 0
	for topic := range topics {
		parts, err := s.log.PartitionCount(topic)
		if err != nil {
			return n, err
		}
		for p := int32(0); p < parts; p++ {
			part, err := s.log.Partition(topic, p)
			if err != nil {
				return n, err
			}
			end := part.EndOffset()
			if end <= part.StartOffset() {
				continue
			}
			// The newest record's time by the log's rule, not a header's
			// MaxTimestamp: a Kafka producer's batch last in the topic may
			// say 0 (no timestamp; the window would then be the whole
			// partition) or 2100 (an empty window).
			last, err := part.AgedAt(end - 1)
			if err != nil {
				return n, err
			}
			from, _, err := part.OffsetForTime(last - window.Milliseconds())
			if err != nil || from < 0 {
				return n, err
			}
			err = forEachRecord(part, from, func(r flog.DecodedRecord) {
				var client, topic, id string
				for _, h := range r.Headers {
					switch h.Key {
					case HeaderClientID:
						client = string(h.Value)
					case HeaderTopic:
						topic = string(h.Value)
					case HeaderPacketID:
						id = string(h.Value)
					}
				}
				pid, err := strconv.ParseUint(id, 10, 16)
				if client == "" || err != nil || pid == 0 {
					return
				}
				s.dedupe.remember(client, uint16(pid), contentHash(topic, r.Value), part, r.Offset)
				n++
			})
			if err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// forEachRecord calls fn for every record of part from offset from to the
// partition's end.
func forEachRecord(part *flog.Partition, from int64, fn func(flog.DecodedRecord)) error {
	for off := max(from, part.StartOffset()); off < part.EndOffset(); {
		rr, err := part.Read(off, 1<<20, nil)
		if err != nil {
			return err
		}
		if len(rr.Data) == 0 {
			return nil
		}
		for data := rr.Data; len(data) > 0; {
			h, err := flog.ParseBatch(data)
			if err != nil {
				return err
			}
			_, recs, err := flog.DecodeRecords(data[:h.Length])
			if err != nil {
				return err
			}
			for _, r := range recs {
				if r.Offset >= off {
					fn(r)
				}
			}
			off = h.LastOffset() + 1
			data = data[h.Length:]
		}
	}
	return nil
}
