package main

import (
	"errors"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/edge"
	"ferry/ingest/mqtt"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestProduceFailsWhenNotDelivered: against a broker nobody answers at,
// produce gives up after --timeout with an error line and exit 1 (it
// waited for ever, and on Ctrl-C said "produced 0 record(s)", exit 0).
func TestProduceFailsWhenNotDelivered(t *testing.T) {
	withStdin(t, "a\nb\n")
	start := time.Now()
	code, out, errOut := ferry(t, "produce", "events", "--brokers", closedAddr(t), "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, "0 of 2 record(s) produced") || !strings.Contains(errOut, "--timeout 1s") || out != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("took %v with --timeout 1s", d)
	}
	if code, _, errOut := ferry(t, "produce", "events", "--value", "x", "--timeout", "10ms"); code != 2 || !strings.Contains(errOut, "at least 1s") {
		t.Fatalf("--timeout 10ms: exit %d %q", code, errOut)
	}
}

// TestProduceCreatesTopicWhereTheNodeAllows: as kcat, produce asks for the
// topic to be created on use; a node that allows it creates it, one that
// does not gets an error that says what to do.
func TestProduceCreatesTopicWhereTheNodeAllows(t *testing.T) {
	n, _ := startNode(t, "")
	code, out, errOut := ferry(t, "produce", "fresh", "--value", "x", "--brokers", n.KafkaAddr(), "--timeout", "20s")
	if code != 0 || !strings.Contains(out, "produced 1 record(s) to fresh") {
		t.Fatalf("exit %d %q %q", code, out, errOut)
	}
	if _, err := n.Log().Partition("fresh", 0); err != nil {
		t.Fatalf("topic fresh: %v", err)
	}

	strict, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		MQTT: mqtt.Options{DefaultTopic: "mqtt"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	code, _, errOut = ferry(t, "produce", "fresh", "--value", "x", "--brokers", strict.KafkaAddr(), "--timeout", "20s")
	if code != 1 || !strings.Contains(errOut, "ferry topics create fresh") || !strings.Contains(errOut, "0 of 1 record(s) produced") {
		t.Fatalf("a node without auto-create: exit %d %q", code, errOut)
	}
}

// TestProduceInterruptedExits130 runs the binary against a broker that
// accepts and never answers, interrupts it once it has connected, and
// wants exit 130 and what was (not) produced.
func TestProduceInterruptedExits130(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cmd := exec.Command(bin, "produce", "events", "--value", "x", "--brokers", ln.Addr().String(), "--timeout", "5m")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The client dials only once produce has set up its signal handling.
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "interrupted: 0 of 1 record(s) produced") {
		t.Fatalf("after SIGINT: %v, stderr %q", err, stderr.String())
	}
}
