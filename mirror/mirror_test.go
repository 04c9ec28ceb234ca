package mirror

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
	"ferry/mirror/wire"
)

var quiet = func() *slog.Logger {
	if os.Getenv("MIRROR_TEST_LOG") != "" {
		return slog.Default()
	}
	return slog.New(slog.DiscardHandler)
}()

func openLog(t testing.TB, dir string) *flog.Log {
	t.Helper()
	l, err := flog.Open(flog.Options{Dir: dir, RetentionCheckInterval: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// center is a receiver over its own log on 127.0.0.1.
type center struct {
	log  *flog.Log
	recv *Receiver
	addr string
	done chan error
}

func startCenter(t testing.TB, l *flog.Log, addr string) *center {
	t.Helper()
	if l == nil {
		l = openLog(t, t.TempDir())
	}
	r, err := NewReceiver(ReceiverOptions{Log: LogTarget{l}, Tokens: map[string]string{"gw1": "s3cret"}, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &center{log: l, recv: r, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { c.done <- r.Serve(ln) }()
	t.Cleanup(c.stop)
	return c
}

func (c *center) stop() {
	if c.recv != nil {
		c.recv.Close()
		<-c.done
		c.recv = nil
	}
}

// edgeNode is a log with a sender running against a center.
type edgeNode struct {
	log    *flog.Log
	sender *Sender
	cancel context.CancelFunc
	done   chan struct{}
}

func startSender(t testing.TB, l *flog.Log, dir, centerAddr string) *edgeNode {
	t.Helper()
	return startSenderWith(t, SenderOptions{Log: l, StatePath: filepath.Join(dir, "mirror.db"), Center: centerAddr, ChunkBytes: 64 << 10})
}

// startSenderWith runs a sender as edge gw1 with opts.
func startSenderWith(t testing.TB, opts SenderOptions) *edgeNode {
	t.Helper()
	opts.EdgeID, opts.Token, opts.Logger = "gw1", "s3cret", quiet
	l := opts.Log
	s, err := NewSender(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.SetShipper(s)
	ctx, cancel := context.WithCancel(context.Background())
	e := &edgeNode{log: l, sender: s, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(e.done); s.Run(ctx) }()
	t.Cleanup(e.stop)
	return e
}

func (e *edgeNode) stop() {
	if e.cancel != nil {
		e.cancel()
		<-e.done
		e.cancel = nil
	}
}

// produce appends n batches of 10 sensor-like records to a partition.
func produce(t testing.TB, l *flog.Log, topic string, partition int32, n int, tag string) {
	t.Helper()
	p, err := l.Partition(topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		recs := make([]flog.Record, 10)
		for j := range recs {
			recs[j] = flog.Record{Key: []byte(fmt.Sprintf("dev%d", j)),
				Value:     []byte(fmt.Sprintf(`{"device":"dev%d","seq":"%s-%d","temperature":%.2f}`, j, tag, i, 20+float64(i%50)/10)),
				Timestamp: time.Now().UnixMilli()}
		}
		if _, err := p.Append(flog.AppendBatch(nil, recs)); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCopied waits until the center's copy of every partition of topic
// ends where the edge's does, then checks it holds the same bytes at the
// same offsets.
func waitCopied(t testing.TB, edgeLog, centerLog *flog.Log, topic string) {
	t.Helper()
	n, err := edgeLog.PartitionCount(topic)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for p := int32(0); p < n; p++ {
		src, _ := edgeLog.Partition(topic, p)
		var dst *flog.Partition
		for {
			dst, err = centerLog.Partition("gw1."+topic, p)
			if err == nil && dst.DurableOffset() >= src.EndOffset() {
				break
			}
			if time.Now().After(deadline) {
				end := int64(-1)
				if dst != nil {
					end = dst.EndOffset()
				}
				t.Fatalf("%s-%d: center at %d, edge at %d after 30 s", topic, p, end, src.EndOffset())
			}
			time.Sleep(5 * time.Millisecond)
		}
		if dst.StartOffset() != src.StartOffset() || dst.EndOffset() != src.EndOffset() {
			t.Fatalf("%s-%d: center [%d, %d), edge [%d, %d)", topic, p, dst.StartOffset(), dst.EndOffset(), src.StartOffset(), src.EndOffset())
		}
		for off := src.StartOffset(); off < src.EndOffset(); {
			a, err := src.Read(off, 1<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := dst.Read(off, 1<<20, nil)
			if err != nil {
				t.Fatal(err)
			}
			m := min(len(a.Data), len(b.Data))
			if m == 0 || !bytes.Equal(a.Data[:m], b.Data[:m]) {
				t.Fatalf("%s-%d at %d: the center's bytes differ from the edge's", topic, p, off)
			}
			// On past every whole batch both reads returned.
			from := off
			for pos := 0; pos < m; {
				h, err := flog.ParseBatchHeader(a.Data[pos:])
				if err != nil || pos+int(h.Length) > m {
					break
				}
				off, pos = h.LastOffset()+1, pos+int(h.Length)
			}
			if off == from {
				t.Fatalf("%s-%d at %d: no whole batch read", topic, p, off)
			}
		}
	}
}

// The mirror ships every partition to the center, where it lands with the
// edge's offsets and bytes, compressed on the wire; the sender records what
// the center acknowledged and pins the rest against retention.
func TestMirrorShipsWithOffsets(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 3, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := edgeLog.CreateTopic("__internal", 1, nil); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		produce(t, edgeLog, "telemetry", p, 50+int(p)*10, "a")
	}
	c := startCenter(t, nil, "")
	e := startSender(t, edgeLog, t.TempDir(), c.addr)
	waitCopied(t, edgeLog, c.log, "telemetry")
	produce(t, edgeLog, "telemetry", 1, 20, "b") // live tail
	waitCopied(t, edgeLog, c.log, "telemetry")
	if _, err := c.log.PartitionCount("gw1.__internal"); err == nil {
		t.Error("a __ topic was mirrored by default")
	}
	waitFor(t, "acknowledgements", func() bool { return e.sender.Acked("telemetry", 1) == 800 })
	if got := e.sender.RetainFrom("telemetry", 1); got != 800 {
		t.Errorf("RetainFrom = %d, want 800", got)
	}
	onWire := testutil.ToFloat64(e.sender.metrics.wireBytes)
	raw := testutil.ToFloat64(e.sender.metrics.rawBytes)
	if onWire <= 0 || raw/onWire < 3 {
		t.Errorf("%.0f bytes on the wire for %.0f raw: compression ratio %.1f", onWire, raw, raw/onWire)
	}
}

// The link drops and the center restarts; the edge keeps appending. The
// center ends with every record once, at the edge's offsets. A sender
// restarted on the same state resumes where the center's copy ends.
func TestMirrorResumesAfterCuts(t *testing.T) {
	edgeDir, centerDir := t.TempDir(), t.TempDir()
	edgeLog := openLog(t, edgeDir)
	if _, err := edgeLog.CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, edgeLog, "telemetry", 0, 30, "a")
	centerLog := openLog(t, centerDir)
	c := startCenter(t, centerLog, "")
	e := startSender(t, edgeLog, edgeDir, c.addr)
	waitCopied(t, edgeLog, centerLog, "telemetry")

	c.stop() // the link goes down
	produce(t, edgeLog, "telemetry", 0, 30, "b")
	produce(t, edgeLog, "telemetry", 1, 30, "b")
	c2 := startCenter(t, centerLog, c.addr)
	waitCopied(t, edgeLog, c2.log, "telemetry")

	e.stop() // the edge restarts
	produce(t, edgeLog, "telemetry", 1, 10, "c")
	e2 := startSender(t, edgeLog, edgeDir, c2.addr)
	waitCopied(t, edgeLog, c2.log, "telemetry")
	if e2.sender.EdgeID() != "gw1" {
		t.Errorf("edge id %q", e2.sender.EdgeID())
	}
}

// rawEdge speaks the protocol frame by frame.
type rawEdge struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialCenter(t *testing.T, addr string) *rawEdge {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawEdge{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawEdge) send(b []byte) { r.c.Write(b) }

func (r *rawEdge) read() any {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	m, _, err := wire.ReadFrame(r.br, nil)
	if err != nil {
		r.t.Fatalf("reading from the center: %v", err)
	}
	return m
}

// Bad input at the receiver is refused with a clear error and stores
// nothing: wrong token, unknown edge, a corrupt chunk, a CRC mismatch,
// offsets going backwards or leaving a gap.
func TestReceiverRefusesBadInput(t *testing.T) {
	c := startCenter(t, nil, "")
	parts := []wire.PartRef{{Topic: "telemetry", Partition: 0, Partitions: 1}}
	for _, tc := range []struct{ edge, token, want string }{
		{"gw1", "nope", "wrong token"},
		{"gw9", "s3cret", "unknown edge"},
	} {
		r := dialCenter(t, c.addr)
		r.send((&wire.Hello{Version: wire.Version, Edge: tc.edge, Token: tc.token, Parts: parts}).Encode(nil))
		if m, ok := r.read().(*wire.Error); !ok || !strings.Contains(m.Message, tc.want) {
			t.Errorf("%s/%s: got %+v, want an error saying %q", tc.edge, tc.token, m, tc.want)
		}
	}
	if got := testutil.ToFloat64(c.recv.metrics.rejected.WithLabelValues("auth")); got != 2 {
		t.Errorf("rejected{reason=auth} = %v, want 2", got)
	}

	batch := func(base int64, n int) []byte {
		recs := make([]flog.Record, n)
		for i := range recs {
			recs[i] = flog.Record{Value: []byte(fmt.Sprint(base + int64(i))), Timestamp: 1}
		}
		b := flog.AppendBatch(nil, recs)
		be := b[0:8]
		for i := 0; i < 8; i++ {
			be[i] = byte(uint64(base) >> (56 - 8*i))
		}
		return b
	}
	mk := func(base, last int64, raw []byte) *wire.Chunk {
		return &wire.Chunk{Topic: "telemetry", Partition: 0, Base: base, Last: last, RawLen: uint32(len(raw)), CRC: wire.Checksum(raw), Data: raw}
	}
	good := batch(0, 5)
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-1] ^= 0xff // a record byte: the batch CRC no longer holds
	badCRC := mk(0, 4, good)
	badCRC.CRC++
	for _, tc := range []struct {
		name string
		ch   *wire.Chunk
		want string
	}{
		{"corrupt batch", mk(0, 4, corrupt), "CRC"},
		{"chunk checksum mismatch", badCRC, "checksum mismatch"},
		{"offsets going backwards", mk(0, 6, append(append([]byte(nil), batch(0, 5)...), batch(3, 2)...)), "where 5 was due"},
		{"gap", mk(10, 14, batch(10, 5)), "does not continue the partition"},
		// From here on the center holds 0..4 (stored by "gap").
		{"corrupt batch the center has", mk(0, 9, append(append([]byte(nil), corrupt...), batch(5, 5)...)), "CRC"},
		{"header lies", mk(0, 9, good), "header says 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// "gap": the center's copy is not empty, so a chunk past its end
			// cannot be stored.
			r := dialCenter(t, c.addr)
			r.send((&wire.Hello{Version: wire.Version, Edge: "gw1", Token: "s3cret", Parts: parts}).Encode(nil))
			if _, ok := r.read().(*wire.Welcome); !ok {
				t.Fatal("no welcome")
			}
			if tc.name == "gap" {
				r.send(mk(0, 4, batch(0, 5)).Encode(nil))
				if a, ok := r.read().(*wire.Ack); !ok || a.Next != 5 {
					t.Fatalf("first chunk: %+v", a)
				}
			}
			before := partEnd(t, c.log)
			r.send(tc.ch.Encode(nil))
			m, ok := r.read().(*wire.Error)
			if !ok || !strings.Contains(m.Message, tc.want) {
				t.Fatalf("got %+v, want an error saying %q", m, tc.want)
			}
			if after := partEnd(t, c.log); after != before {
				t.Fatalf("a refused chunk stored records: end %d → %d", before, after)
			}
		})
	}
}

func partEnd(t *testing.T, l *flog.Log) int64 {
	p, err := l.Partition("gw1.telemetry", 0)
	if err != nil {
		t.Fatal(err)
	}
	return p.EndOffset()
}

// A chunk resent after its acknowledgement was lost overlaps what the
// center has: it is trimmed, not stored twice.
func TestResentChunkIsTrimmed(t *testing.T) {
	c := startCenter(t, nil, "")
	r := dialCenter(t, c.addr)
	r.send((&wire.Hello{Version: wire.Version, Edge: "gw1", Token: "s3cret", Parts: []wire.PartRef{{Topic: "t", Partition: 0, Partitions: 1}}}).Encode(nil))
	r.read()
	var raw []byte
	for base := int64(0); base < 20; base += 5 {
		recs := make([]flog.Record, 5)
		for i := range recs {
			recs[i] = flog.Record{Value: []byte{byte(base) + byte(i)}, Timestamp: 1}
		}
		b := flog.AppendBatch(nil, recs)
		for i := 0; i < 8; i++ {
			b[i] = byte(uint64(base) >> (56 - 8*i))
		}
		raw = append(raw, b...)
	}
	half := len(raw) / 2 // two batches of four
	send := func(base, last int64, data []byte) int64 {
		r.send((&wire.Chunk{Topic: "t", Partition: 0, Base: base, Last: last, RawLen: uint32(len(data)), CRC: wire.Checksum(data), Data: data}).Encode(nil))
		a, ok := r.read().(*wire.Ack)
		if !ok {
			t.Fatal("no ack")
		}
		return a.Next
	}
	if next := send(0, 9, raw[:half]); next != 10 {
		t.Fatalf("ack %d", next)
	}
	if next := send(0, 19, raw); next != 20 { // resent from 0
		t.Fatalf("ack %d", next)
	}
	p, _ := c.log.Partition("gw1.t", 0)
	if p.EndOffset() != 20 {
		t.Fatalf("end %d after an overlapping resend, want 20", p.EndOffset())
	}
	if got := testutil.ToFloat64(c.recv.metrics.trimmed); got != float64(half) {
		t.Errorf("trimmed %v bytes, want %d", got, half)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	// Past one whole reconnect backoff (at most 30 s): a center stopped
	// while a loaded machine writes a backlog can leave the sender waiting
	// that long before it tries again.
	deadline := time.Now().Add(45 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A batch the edge's topic allows (max.message.bytes raised there) ships
// even though it is larger than the center's topic default: the limit is
// for producers, and the edge accepted it.
func TestMirrorShipsBatchesAboveTheCentersLimit(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("big", 1, map[string]string{flog.ConfigMaxMessageBytes: "4194304"}); err != nil {
		t.Fatal(err)
	}
	p, _ := edgeLog.Partition("big", 0)
	value := bytes.Repeat([]byte("0123456789abcdef"), 160_000) // 2.56 MB
	if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Value: value, Timestamp: time.Now().UnixMilli()}})); err != nil {
		t.Fatal(err)
	}
	c := startCenter(t, nil, "")
	startSender(t, edgeLog, t.TempDir(), c.addr)
	waitCopied(t, edgeLog, c.log, "big")
}
