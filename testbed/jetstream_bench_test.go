package testbed

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// BenchmarkJetStreamPublish is the peer for ingest/kafka's BenchmarkProduce:
// nats-server (Debian) with a file-backed JetStream stream, 100-byte
// messages published asynchronously, each acknowledged by the server (a
// JetStream ack means stored in the file store's page cache; it fsyncs on its
// own interval, like ferry's acks=1 with flush.policy=interval).
func BenchmarkJetStreamPublish(b *testing.B) {
	js := startJetStream(b)
	val := make([]byte, 100)
	b.SetBytes(100)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := js.js.PublishAsync("bench", val); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("acks did not arrive")
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// jetStream is a running nats-server with the file-backed stream BENCH on
// subject "bench", and a connection to it.
type jetStream struct {
	js  nats.JetStreamContext
	pid int
}

// startJetStream starts nats-server (Debian's) with JetStream on 127.0.0.1
// in a temporary directory; it is stopped when b ends. Without nats-server
// b is skipped, except under CI=true, where `make bench-peers` must have
// installed it.
func startJetStream(b *testing.B) *jetStream {
	b.Helper()
	bin := natsServerBin(b)
	port := freePort(b)
	pid := runNatsServer(b, bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", b.TempDir())
	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := nc.JetStream(nats.PublishAsyncMaxPending(4096))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := js.AddStream(&nats.StreamConfig{Name: "BENCH", Subjects: []string{"bench"}, Storage: nats.FileStorage}); err != nil {
		b.Fatal(err)
	}
	return &jetStream{js: js, pid: pid}
}

// natsServerBin is nats-server's path. Without it b is skipped, except
// under CI=true, where `make bench-peers` must have installed it.
func natsServerBin(b testing.TB) string {
	b.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			b.Fatal("nats-server is required under CI=true (make bench-peers installs it)")
		}
		b.Skip("nats-server not installed (apt-get install nats-server)")
	}
	return bin
}

// runNatsServer starts nats-server with args, waits for it to be ready and
// stops it when b ends; it returns its pid.
func runNatsServer(b testing.TB, bin string, args ...string) int {
	b.Helper()
	cmd := exec.Command(bin, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Server is ready") {
				close(ready)
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(20 * time.Second):
		b.Fatal("nats-server did not start")
	}
	return cmd.Process.Pid
}

func freePort(b testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
