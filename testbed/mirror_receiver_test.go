package testbed

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	flog "ferry/log"
	"ferry/mirror/wire"
)

// handEdge is an edge driven by hand: one TCP connection to a center's
// mirror receiver, written and read frame by frame with mirror/wire.
type handEdge struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialHandEdge(t *testing.T, addr string) *handEdge {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &handEdge{t: t, c: c, br: bufio.NewReader(c)}
}

func (e *handEdge) write(b []byte) {
	e.t.Helper()
	e.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := e.c.Write(b); err != nil {
		e.t.Fatalf("writing to the center: %v", err)
	}
}

func (e *handEdge) send(m wire.Message) { e.t.Helper(); e.write(m.Encode(nil)) }

// next reads the center's next frame.
func (e *handEdge) next() (wire.Message, error) {
	e.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, _, err := wire.ReadFrame(e.br, nil)
	return m, err
}

// hello opens a session as edge with token, announcing parts, and returns
// the center's answer.
func (e *handEdge) hello(edge, token string, parts ...wire.PartRef) wire.Message {
	e.t.Helper()
	e.send(&wire.Hello{Version: wire.Version, Edge: edge, Token: token, Parts: parts})
	m, err := e.next()
	if err != nil {
		e.t.Fatalf("no answer to hello: %v", err)
	}
	return m
}

// acked sends a chunk and waits for its acknowledgement, which must say
// the partition is durable up to next.
func (e *handEdge) acked(ch *wire.Chunk, next int64) {
	e.t.Helper()
	e.send(ch)
	m, err := e.next()
	if err != nil {
		e.t.Fatalf("chunk %d..%d: no acknowledgement: %v", ch.Base, ch.Last, err)
	}
	a, ok := m.(*wire.Ack)
	if !ok || a.Topic != ch.Topic || a.Partition != ch.Partition || a.Next != next {
		e.t.Fatalf("chunk %s-%d %d..%d: got %#v, want an ack up to %d", ch.Topic, ch.Partition, ch.Base, ch.Last, m, next)
	}
}

// refused checks that the center answers an Error frame saying want, then
// closes the connection.
func (e *handEdge) refused(want string) {
	e.t.Helper()
	m, err := e.next()
	e.says(m, err, want)
}

// says checks that the frame read (m, err) is an Error saying want and
// that the center then closes the connection.
func (e *handEdge) says(m wire.Message, err error, want string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("want an error frame saying %q, got %v", want, err)
	}
	em, ok := m.(*wire.Error)
	if !ok || !strings.Contains(em.Message, want) {
		e.t.Fatalf("got %#v, want an error frame saying %q", m, want)
	}
	e.t.Logf("refused: %s", em.Message)
	if m, err := e.next(); !closedConn(err) {
		e.t.Fatalf("the center kept the connection open after refusing (read %#v, %v)", m, err)
	}
}

func closedConn(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) }

// batchAt is an uncompressed record batch of n records at offsets
// base..base+n-1, valued tag-OFFSET. The base offset lies outside the
// batch's CRC, so setting it keeps the batch valid.
func batchAt(base int64, n int, tag string) []byte {
	recs := make([]flog.Record, n)
	for i := range recs {
		recs[i] = flog.Record{Key: []byte("dev1"), Value: []byte(fmt.Sprintf("%s-%d", tag, base+int64(i))), Timestamp: time.Now().UnixMilli()}
	}
	b := flog.AppendBatch(nil, recs)
	binary.BigEndian.PutUint64(b, uint64(base))
	return b
}

// resealed fixes a batch's own CRC after it was edited (CRC-32C of the
// bytes from the attributes on, at byte 17), so only the edit is wrong.
func resealed(b []byte) []byte {
	binary.BigEndian.PutUint32(b[17:], wire.Checksum(b[21:]))
	return b
}

var chunkEncoder, _ = zstd.NewWriter(nil)

// chunkOf wraps batches into a chunk of topic's partition as an edge ships
// it: Base from the first batch, Last from the last one, the CRC-32C of
// the uncompressed bytes, compressed with codec.
func chunkOf(topic string, partition int32, codec uint8, batches ...[]byte) *wire.Chunk {
	var raw []byte
	for _, b := range batches {
		raw = append(raw, b...)
	}
	last := batches[len(batches)-1]
	ch := &wire.Chunk{Topic: topic, Partition: partition, Codec: codec, RawLen: uint32(len(raw)), CRC: wire.Checksum(raw), Data: raw,
		Base: int64(binary.BigEndian.Uint64(batches[0])),
		Last: int64(binary.BigEndian.Uint64(last)) + int64(binary.BigEndian.Uint32(last[23:])), // base + last offset delta
	}
	if codec == wire.CodecZstd {
		ch.Data = chunkEncoder.EncodeAll(raw, nil)
	}
	return ch
}

// rejectedOnce reads the center's ferry_mirror_receiver_rejected_total
// by reason, runs refuse, and checks that exactly one rejection was
// counted, under one of reasons.
func rejectedOnce(t *testing.T, center *ferryProc, refuse func(), reasons ...string) {
	t.Helper()
	const name = "ferry_mirror_receiver_rejected_total"
	before := ferryMetrics(t, center.adminAddr, name)
	refuse()
	after := ferryMetrics(t, center.adminAddr, name)
	var rose []string
	for k, v := range after {
		if v != before[k] {
			rose = append(rose, fmt.Sprintf("%s +%v", k, v-before[k]))
		}
	}
	for _, r := range reasons {
		k := fmt.Sprintf("%s{reason=%q}", name, r)
		if len(rose) == 1 && after[k] == before[k]+1 {
			return
		}
	}
	t.Errorf("%s: %v rose, want one rejection counted under one of the reasons %q", name, rose, reasons)
}

// TestMirrorReceiverRefusesBadInput speaks the mirror protocol frame by
// frame to a real `ferry full`: a wrong token, an unknown edge, a corrupt
// chunk, CRC mismatches, offsets going backwards, a chunk for a partition
// the edge did not announce and an oversized frame are each answered with
// an Error frame saying what was wrong, the connection is closed, the
// rejection is counted in /metrics, and nothing is stored. A chunk that
// only repeats what the center has (a resend after a lost ack) is trimmed
// and acknowledged, not stored twice. Two cases skip, after their other
// checks, while the receiver does what the skip message says.
func TestMirrorReceiverRefusesBadInput(t *testing.T) {
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	cl, err := kgo.NewClient(kgo.SeedBrokers(center.kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	topicExists := func(name string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		td, err := kadm.NewClient(cl).ListTopics(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return td.Has(name)
	}

	// The handshake: refused before any topic is made.
	for _, tc := range []struct {
		name, edge, token string
		version           uint16
		reason, want      string
	}{
		{"wrong token", "gw1", "nope", wire.Version, "auth", `wrong token for edge "gw1"`},
		{"unknown edge", "gw9", "s3cret", wire.Version, "auth", `unknown edge "gw9"`},
		{"old protocol version", "gw1", "s3cret", wire.MinVersion - 1, "protocol", "protocol version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rejectedOnce(t, center, func() {
				e := dialHandEdge(t, center.mirrorAddr)
				e.send(&wire.Hello{Version: tc.version, Edge: tc.edge, Token: tc.token, Parts: []wire.PartRef{{Topic: "never", Partition: 0, Partitions: 1}}})
				e.refused(tc.want)
			}, tc.reason)
			if topicExists(tc.edge + ".never") {
				t.Errorf("a refused hello created %s.never at the center", tc.edge)
			}
		})
	}

	t.Run("oversized hello", func(t *testing.T) {
		rejectedOnce(t, center, func() {
			e := dialHandEdge(t, center.mirrorAddr)
			e.write(append(binary.BigEndian.AppendUint32(nil, wire.MaxFrame+1), 1)) // a hello's length and type
			m, err := e.next()
			e.says(m, err, "frame length")
		}, "malformed")
	})

	// Chunks: each case opens a session on its own topic (two partitions,
	// partition 0 announced), stores offsets 0..9 as two batches and has
	// them acknowledged, then sends something bad after them.
	const chunkTopic = "bad"
	good := func(t *testing.T, topic string) (*handEdge, [][]byte) {
		t.Helper()
		e := dialHandEdge(t, center.mirrorAddr)
		m := e.hello("gw1", "s3cret", wire.PartRef{Topic: topic, Partition: 0, Partitions: 2})
		w, ok := m.(*wire.Welcome)
		if !ok || len(w.Resume) != 1 || w.Resume[0].Topic != topic || w.Resume[0].Partition != 0 || w.Resume[0].Next != -1 {
			t.Fatalf("hello: got %#v, want a welcome resuming %s-0 from the edge's start", m, topic)
		}
		batches := [][]byte{batchAt(0, 5, "good"), batchAt(5, 5, "good")}
		e.acked(chunkOf(topic, 0, wire.CodecZstd, batches...), 10)
		return e, batches
	}
	storedGood := func(t *testing.T, topic string) {
		t.Helper()
		if got := endsOf(t, center.kafkaAddr, "gw1."+topic); got[0] != 10 || got[1] != 0 {
			t.Fatalf("the center's gw1.%s ends at %v, want 10 and 0: a refused chunk stored records", topic, got)
		}
		got := readAll(t, center.kafkaAddr, "gw1."+topic)
		for o := int64(0); o < 10; o++ {
			if v := got[fmt.Sprintf("0/%d", o)]; v != fmt.Sprintf("good-%d", o) {
				t.Fatalf("gw1.%s at 0/%d: %q", topic, o, v)
			}
		}
	}
	for i, tc := range []struct {
		name   string
		frame  func(topic string) []byte // sent after offsets 0..9 are acknowledged
		want   string
		reason string // of ferry_mirror_receiver_rejected_total; "chunk" when empty
	}{
		{"corrupt chunk", func(topic string) []byte {
			ch := chunkOf(topic, 0, wire.CodecZstd, batchAt(10, 5, "bad"))
			ch.Data = []byte("this is not a zstd frame at all, just garbage")
			return ch.Encode(nil)
		}, "zstd", ""},
		{"chunk CRC mismatch", func(topic string) []byte {
			ch := chunkOf(topic, 0, wire.CodecNone, batchAt(10, 5, "bad"))
			ch.CRC ^= 1
			return ch.Encode(nil)
		}, "checksum mismatch", ""},
		{"batch CRC mismatch", func(topic string) []byte {
			b := batchAt(10, 5, "bad")
			b[len(b)-1] ^= 0xff // a byte of the last record: the batch CRC no longer holds
			return chunkOf(topic, 0, wire.CodecZstd, b).Encode(nil)
		}, "CRC-32C mismatch", ""},
		{"batch whose records do not match its header", func(topic string) []byte {
			// The batch CRC holds, but its header counts 4 records of 5:
			// the log's own check finds it, after a good batch before it,
			// which must not be stored either.
			b := batchAt(15, 5, "bad")
			binary.BigEndian.PutUint32(b[57:], 4)
			return chunkOf(topic, 0, wire.CodecZstd, batchAt(10, 5, "bad"), resealed(b)).Encode(nil)
		}, "4 records with last offset delta 4", ""},
		{"offsets backwards inside the chunk", func(topic string) []byte {
			return chunkOf(topic, 0, wire.CodecZstd, batchAt(10, 5, "bad"), batchAt(12, 5, "bad")).Encode(nil)
		}, "batch at offset 12 where 15 was due", ""},
		{"offsets backwards from the center's end", func(topic string) []byte {
			// Not a resend: one batch 5..14 straddles the end at 10.
			return chunkOf(topic, 0, wire.CodecZstd, batchAt(5, 10, "bad")).Encode(nil)
		}, "ends at 10", ""},
		{"gap after the center's end", func(topic string) []byte {
			return chunkOf(topic, 0, wire.CodecZstd, batchAt(15, 5, "bad")).Encode(nil)
		}, "ends at 10", ""},
		{"header disagrees with the batches", func(topic string) []byte {
			ch := chunkOf(topic, 0, wire.CodecZstd, batchAt(10, 5, "bad"))
			ch.Last = 20
			return ch.Encode(nil)
		}, "header says 20", ""},
		{"partition not announced", func(topic string) []byte {
			return chunkOf(topic, 1, wire.CodecZstd, batchAt(0, 5, "bad")).Encode(nil)
		}, "did not announce", "protocol"},
		{"oversized frame", func(string) []byte {
			return append(binary.BigEndian.AppendUint32(nil, wire.MaxFrame+1), 3) // a chunk's length and type, nothing after them
		}, "frame length", "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := fmt.Sprintf("%s%d", chunkTopic, i)
			e, _ := good(t, topic)
			reason := tc.reason
			if reason == "" {
				reason = "chunk"
			}
			rejectedOnce(t, center, func() { e.write(tc.frame(topic)); e.refused(tc.want) }, reason)
			storedGood(t, topic)
		})
	}

	t.Run("resend is trimmed", func(t *testing.T) {
		const topic = "resent"
		e, batches := good(t, topic)
		metric := func(name string) (sum float64) {
			for _, v := range ferryMetrics(t, center.adminAddr, name) {
				sum += v
			}
			return sum
		}
		rejected := metric("ferry_mirror_receiver_rejected_total")
		trimmed := metric("ferry_mirror_receiver_trimmed_bytes_total")
		// The second batch again, as an edge resends a chunk whose ack was lost.
		e.acked(chunkOf(topic, 0, wire.CodecZstd, batches[1]), 10)
		if got := metric("ferry_mirror_receiver_trimmed_bytes_total"); got != trimmed+float64(len(batches[1])) {
			t.Errorf("trimmed bytes: %v, then %v; want %d more", trimmed, got, len(batches[1]))
		}
		storedGood(t, topic)
		// A resend that runs on past the end: the overlap is skipped, the rest stored.
		e.acked(chunkOf(topic, 0, wire.CodecZstd, batches[1], batchAt(10, 5, "good")), 15)
		got := readAll(t, center.kafkaAddr, "gw1."+topic)
		if len(got) != 15 {
			t.Fatalf("gw1.%s holds %d records after overlapping resends, want 15", topic, len(got))
		}
		for o := 0; o < 15; o++ {
			if v := got[fmt.Sprintf("0/%d", o)]; v != fmt.Sprintf("good-%d", o) {
				t.Fatalf("gw1.%s at 0/%d: %q", topic, o, v)
			}
		}
		if got := metric("ferry_mirror_receiver_rejected_total"); got != rejected {
			t.Errorf("a resend was counted as rejected")
		}
		// A new session resumes where the copy ends.
		e.c.Close()
		w, ok := dialHandEdge(t, center.mirrorAddr).hello("gw1", "s3cret", wire.PartRef{Topic: topic, Partition: 0, Partitions: 2}).(*wire.Welcome)
		if !ok || len(w.Resume) != 1 || w.Resume[0].Next != 15 {
			t.Fatalf("the next session resumes at %+v, want 15", w)
		}
	})
}
