package mirror

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
)

// cuttingProxy forwards edge → center connections. Connection i (from 0)
// is reset both ways (SO_LINGER 0: an RST, unsent data dropped) once
// cuts[i] bytes of it went edge → center; later connections are not cut.
type cuttingProxy struct {
	ln     net.Listener
	target string
	cuts   []int64

	mu    sync.Mutex
	conns int
}

func startCuttingProxy(t testing.TB, target string, cuts ...int64) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln, target: target, cuts: cuts}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			edge, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			i := p.conns
			p.conns++
			p.mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(i, edge.(*net.TCPConn)) }()
		}
	}()
	return p
}

func (p *cuttingProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns
}

func (p *cuttingProxy) serve(i int, edge *net.TCPConn) {
	defer edge.Close()
	c, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	center := c.(*net.TCPConn)
	defer center.Close()
	go io.Copy(edge, center)
	if i >= len(p.cuts) {
		io.Copy(center, edge)
		return
	}
	io.CopyN(center, edge, p.cuts[i])
	edge.SetLinger(0)
	center.SetLinger(0)
}

// produceBig appends one batch of n records of about 100 random hex bytes
// each: larger than a small ChunkBytes, and zstd cannot shrink it much.
func produceBig(t testing.TB, l *flog.Log, topic string, partition int32, n int) {
	t.Helper()
	p, err := l.Partition(topic, partition)
	if err != nil {
		t.Fatal(err)
	}
	recs := make([]flog.Record, n)
	for i := range recs {
		pad := make([]byte, 50)
		rand.Read(pad)
		recs[i] = flog.Record{Key: []byte(fmt.Sprintf("dev%d", i%10)), Value: []byte(hex.EncodeToString(pad)), Timestamp: time.Now().UnixMilli()}
	}
	if _, err := p.Append(flog.AppendBatch(nil, recs)); err != nil {
		t.Fatal(err)
	}
}

// The link is reset three times in the middle of a chunk: the chunk of a
// batch larger than ChunkBytes (shipped whole, as one chunk), with smaller
// chunks of another partition in flight beside it. After each reset the
// edge reconnects, resends from where the center's copy ends, and the
// center ends with every record once, at the edge's offsets.
func TestMirrorSurvivesResetsMidChunk(t *testing.T) {
	edgeLog := openLog(t, t.TempDir())
	if _, err := edgeLog.CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, edgeLog, "telemetry", 0, 30, "a")
	produceBig(t, edgeLog, "telemetry", 0, 600) // ~65 KiB in one batch
	produce(t, edgeLog, "telemetry", 0, 30, "b")
	produce(t, edgeLog, "telemetry", 1, 200, "a")

	c := startCenter(t, nil, "")
	// Each of the first three connections is cut 24 KiB (and a few bytes,
	// so not on a frame boundary) into what the edge sends: inside the
	// big chunk, which the small chunks before it cannot fill.
	proxy := startCuttingProxy(t, c.addr, 24<<10+7, 24<<10+501, 24<<10+1499)
	e := startSenderWith(t, SenderOptions{Log: edgeLog, StatePath: filepath.Join(t.TempDir(), "mirror.db"), Center: proxy.ln.Addr().String(),
		ChunkBytes: 4 << 10, AckTimeout: 5 * time.Second})
	waitCopied(t, edgeLog, c.log, "telemetry")
	if n := proxy.connections(); n < 4 {
		t.Errorf("%d connections through the proxy, want at least 4 (three cut)", n)
	}
	if got := testutil.ToFloat64(e.sender.metrics.reconnect); got < 4 {
		t.Errorf("the sender connected %v times, want at least 4", got)
	}
	// Resent chunks overlapping what the center stored before a cut are
	// trimmed, never appended twice (waitCopied checked the bytes).
	t.Logf("%v chunks sent, %v acknowledged, %v bytes trimmed at the center", testutil.ToFloat64(e.sender.metrics.chunks),
		testutil.ToFloat64(e.sender.metrics.acked), testutil.ToFloat64(c.recv.metrics.trimmed))
}
