package testbed

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// buildFerry builds the ferry binary once per test binary.
var (
	buildOnce sync.Once
	ferryBin  string
	buildErr  error
)

func ferryBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := filepath.Abs("../bin-test")
		if err != nil {
			buildErr = err
			return
		}
		ferryBin = filepath.Join(dir, "ferry")
		out, err := exec.Command("go", "build", "-o", ferryBin, "../cmd/ferry").CombinedOutput()
		if err != nil {
			buildErr = &buildError{err, string(out)}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return ferryBin
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// ferryProc is a running `ferry edge` on 127.0.0.1 ports it chose itself.
type ferryProc struct {
	cmd       *exec.Cmd
	kafkaAddr string
	adminAddr string
	mqttAddr  string
	exited    chan error
}

// startEdge starts `ferry edge` on dataDir and waits for its ready line.
// Its warnings and errors are copied to stderr: under load they are part
// of the result. It is killed when the test or benchmark ends.
func startEdge(t testing.TB, dataDir string, extra ...string) *ferryProc {
	t.Helper()
	args := append([]string{"edge", "--data-dir", dataDir, "--admin-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	cmd := exec.Command(ferryBinary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ferryProc{cmd: cmd, exited: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg   string   `json:"msg"`
				Level string   `json:"level"`
				Kafka string   `json:"kafka_addr"`
				Admin string   `json:"admin_addr"`
				MQTT  []string `json:"mqtt_addrs"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "ferry edge ready":
				p.kafkaAddr, p.adminAddr = line.Kafka, line.Admin
				if len(line.MQTT) > 0 {
					p.mqttAddr = line.MQTT[0]
				}
				close(ready)
			case line.Level == "WARN" || line.Level == "ERROR":
				fmt.Fprintf(os.Stderr, "ferry: %s\n", sc.Bytes())
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { p.exited <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-p.exited:
		t.Fatalf("ferry edge exited before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("ferry edge not ready within 30 s")
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	return p
}
