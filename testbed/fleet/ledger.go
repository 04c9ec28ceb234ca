package fleet

import (
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
)

// Outcome is what became of one sequence number of a stream.
type Outcome uint8

const (
	// NotSent: never handed to the connection (the zero value).
	NotSent Outcome = iota
	// Sent: written at QoS 0, no acknowledgement asked for.
	Sent
	// Acked: acknowledged by the broker (PUBACK, or a Kafka produce
	// response with acks=all): the record must be in the log, once.
	Acked
	// Failed: sent, and the outcome is unknown (the connection dropped
	// before the acknowledgement, a timeout, a refusal): the record may be
	// in the log, at most once.
	Failed
)

// Ledger records, per key, the outcome of every sequence number. It is
// safe for concurrent use; each key's sequence numbers are given out by
// one writer.
type Ledger struct {
	mu   sync.Mutex
	keys map[string][]Outcome

	sent, acked, failed, pending atomic.Int64
}

// NewLedger returns an empty ledger.
func NewLedger() *Ledger { return &Ledger{keys: map[string][]Outcome{}} }

// begin counts a send attempt whose outcome is still to come.
func (l *Ledger) begin() {
	l.sent.Add(1)
	l.pending.Add(1)
}

// abandon takes back a send begun with begin that never left.
func (l *Ledger) abandon() {
	l.sent.Add(-1)
	l.pending.Add(-1)
}

// end records the outcome of a send begun with begin.
func (l *Ledger) end(key string, seq int64, o Outcome) {
	l.pending.Add(-1)
	switch o {
	case Acked:
		l.acked.Add(1)
	case Failed:
		l.failed.Add(1)
	}
	l.mu.Lock()
	s := l.keys[key]
	for int64(len(s)) <= seq {
		s = append(s, NotSent)
	}
	s[seq] = o
	l.keys[key] = s
	l.mu.Unlock()
}

// Counts are the send attempts so far, those acknowledged, those failed,
// and those still waiting for their outcome.
type Counts struct {
	Sent, Acked, Failed, Pending int64
}

// Counts returns the counts so far.
func (l *Ledger) Counts() Counts {
	return Counts{Sent: l.sent.Load(), Acked: l.acked.Load(), Failed: l.failed.Load(), Pending: l.pending.Load()}
}

// Keys is the number of keys with at least one send.
func (l *Ledger) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}

// Record is a record as read from a log: its place and its bytes.
type Record struct {
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
}

// Verdict is the comparison of a ledger with a log (Check).
type Verdict struct {
	Records       int   // records read from the log
	Acked         int64 // acknowledged in the ledger
	AckedPresent  int64 // of those, found in the log
	FailedPresent int64 // failed (outcome unknown) and found, once
	FailedAbsent  int64 // failed and not found
	SentAbsent    int64 // QoS 0 and not found

	// Each problem, counted, with up to 10 examples.
	Missing    Problem // acknowledged, not in the log
	Duplicates Problem // a sequence number of a key stored more than once
	OutOfOrder Problem // a key's sequence number lower than one before it
	Unknown    Problem // records the ledger never sent, or not this fleet's
	Misrouted  Problem // a key in two partitions, or the record key not the payload's
}

// Problem counts one kind of failure and keeps a few examples.
type Problem struct {
	N        int64
	Examples []string
}

func (p *Problem) add(format string, args ...any) {
	p.N++
	if len(p.Examples) < 10 {
		p.Examples = append(p.Examples, fmt.Sprintf(format, args...))
	}
}

// OK reports whether the log holds every acknowledged record exactly once,
// in order per key, and nothing else.
func (v Verdict) OK() bool {
	return v.Missing.N+v.Duplicates.N+v.OutOfOrder.N+v.Unknown.N+v.Misrouted.N == 0
}

// Problems describes what is wrong, one line per kind; empty when OK.
func (v Verdict) Problems() []string {
	var out []string
	for _, p := range []struct {
		name string
		p    Problem
	}{
		{"acknowledged records missing", v.Missing},
		{"duplicate records", v.Duplicates},
		{"records out of order", v.OutOfOrder},
		{"unknown records", v.Unknown},
		{"misrouted records", v.Misrouted},
	} {
		if p.p.N > 0 {
			out = append(out, fmt.Sprintf("%d %s, e.g. %v", p.p.N, p.name, p.p.Examples))
		}
	}
	return out
}

// String summarises the verdict in one line.
func (v Verdict) String() string {
	s := fmt.Sprintf("%d records: %d/%d acknowledged present; unacknowledged: %d present, %d absent",
		v.Records, v.AckedPresent, v.Acked, v.FailedPresent, v.FailedAbsent+v.SentAbsent)
	if !v.OK() {
		s += fmt.Sprintf("; PROBLEMS: %d missing, %d duplicated, %d out of order, %d unknown, %d misrouted",
			v.Missing.N, v.Duplicates.N, v.OutOfOrder.N, v.Unknown.N, v.Misrouted.N)
	}
	return s
}

// payloadID is what Check reads of a payload.
type payloadID struct {
	Device string `json:"device"`
	Key    string `json:"key"`
	Seq    *int64 `json:"seq"`
	SentUS int64  `json:"sent_us"`
}

// Check compares the ledger with recs, every record of one topic in
// partition and offset order. A record belongs to the key its payload
// names ("device" or "key"), which must be the record's key.
func Check(l *Ledger, recs []Record) Verdict {
	l.mu.Lock()
	defer l.mu.Unlock()
	v := Verdict{Records: len(recs)}
	type keyState struct {
		seen      []bool
		last      int64
		partition int32
	}
	state := map[string]*keyState{}
	for _, r := range recs {
		var id payloadID
		if err := json.Unmarshal(r.Value, &id); err != nil || id.Seq == nil {
			v.Unknown.add("p%d@%d: not a fleet payload: %.60q", r.Partition, r.Offset, r.Value)
			continue
		}
		key := id.Device
		if key == "" {
			key = id.Key
		}
		seq := *id.Seq
		if string(r.Key) != key {
			v.Misrouted.add("p%d@%d: record key %q, payload %q", r.Partition, r.Offset, r.Key, key)
		}
		sent, ok := l.keys[key]
		if !ok || seq < 0 || seq >= int64(len(sent)) || sent[seq] == NotSent {
			v.Unknown.add("p%d@%d: %s #%d never sent", r.Partition, r.Offset, key, seq)
			continue
		}
		ks := state[key]
		if ks == nil {
			ks = &keyState{seen: make([]bool, len(sent)), last: -1, partition: r.Partition}
			state[key] = ks
		}
		if ks.partition != r.Partition {
			v.Misrouted.add("%s in partitions %d and %d", key, ks.partition, r.Partition)
		}
		switch {
		case ks.seen[seq]:
			v.Duplicates.add("%s #%d again at p%d@%d", key, seq, r.Partition, r.Offset)
			continue
		case seq < ks.last:
			v.OutOfOrder.add("%s #%d at p%d@%d after #%d", key, seq, r.Partition, r.Offset, ks.last)
		default:
			ks.last = seq
		}
		ks.seen[seq] = true
	}
	keys := make([]string, 0, len(l.keys))
	for k := range l.keys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		var seen []bool
		if ks := state[k]; ks != nil {
			seen = ks.seen
		}
		for seq, o := range l.keys[k] {
			found := seq < len(seen) && seen[seq]
			switch o {
			case Acked:
				v.Acked++
				if found {
					v.AckedPresent++
				} else {
					v.Missing.add("%s #%d", k, seq)
				}
			case Failed:
				if found {
					v.FailedPresent++
				} else {
					v.FailedAbsent++
				}
			case Sent:
				if !found {
					v.SentAbsent++
				}
			}
		}
	}
	return v
}
