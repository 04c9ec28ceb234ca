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

// buildFerry builds the ferry binary once per test binary; FERRY_TEST_BIN
// names one to run instead.
var (
	buildOnce sync.Once
	ferryBin  string
	buildErr  error
)

func ferryBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if bin := os.Getenv("FERRY_TEST_BIN"); bin != "" {
			// A build to compare with (an older commit's, say).
			ferryBin = bin
			return
		}
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

// ferryProc is a running `ferry edge` or `ferry full` on 127.0.0.1 ports
// it chose itself.
type ferryProc struct {
	cmd        *exec.Cmd
	kafkaAddr  string
	adminAddr  string
	mqttAddr   string
	mirrorAddr string
	exited     chan error    // receives the exit status once
	done       chan struct{} // closed once the process has exited
}

// startEdge starts `ferry edge` on dataDir and waits for its ready line.
// Its warnings and errors are copied to stderr: under load they are part
// of the result. It is killed when the test or benchmark ends.
func startEdge(t testing.TB, dataDir string, extra ...string) *ferryProc {
	t.Helper()
	return startFerry(t, "edge", append([]string{"--data-dir", dataDir, "--mqtt-addr", "127.0.0.1:0"}, extra...))
}

// startFull starts `ferry full` on dataDir, its mirror receiver on
// mirrorAddr ("127.0.0.1:0" when empty).
func startFull(t testing.TB, dataDir, mirrorAddr string, extra ...string) *ferryProc {
	t.Helper()
	if mirrorAddr == "" {
		mirrorAddr = "127.0.0.1:0"
	}
	return startFerry(t, "full", append([]string{"--data-dir", dataDir, "--mirror-addr", mirrorAddr}, extra...))
}

func startFerry(t testing.TB, mode string, extra []string) *ferryProc {
	t.Helper()
	return startFerryBin(t, ferryBinary(t), "", mode, extra)
}

// startFerryBin is startFerry with the binary given (BenchmarkFootprint
// measures the release build, stripped, not the test build) and the
// working directory (relative paths in a config file; "": the test's).
func startFerryBin(t testing.TB, bin, workDir, mode string, extra []string) *ferryProc {
	t.Helper()
	return startFerryWrapped(t, nil, bin, workDir, mode, extra)
}

// startFerryWrapped is startFerryBin run through wrap, a command that
// execs the binary in place (`ip netns exec NS`: the pid is ferry's).
func startFerryWrapped(t testing.TB, wrap []string, bin, workDir, mode string, extra []string) *ferryProc {
	t.Helper()
	args := append([]string{mode, "--admin-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--log-format", "json"}, extra...)
	argv := append(append(append([]string(nil), wrap...), bin), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = workDir
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ferryProc{cmd: cmd, exited: make(chan error, 1), done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var line struct {
				Msg    string   `json:"msg"`
				Level  string   `json:"level"`
				Kafka  string   `json:"kafka_addr"`
				Admin  string   `json:"admin_addr"`
				MQTT   []string `json:"mqtt_addrs"`
				Mirror string   `json:"mirror_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "ferry "+mode+" ready":
				p.kafkaAddr, p.adminAddr, p.mirrorAddr = line.Kafka, line.Admin, line.Mirror
				if len(line.MQTT) > 0 {
					p.mqttAddr = line.MQTT[0]
				}
				close(ready)
			case line.Level == "WARN" || line.Level == "ERROR" || os.Getenv("FERRY_TEST_LOG") != "":
				fmt.Fprintf(os.Stderr, "ferry: %s\n", sc.Bytes())
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		p.exited <- cmd.Wait()
		close(p.done)
	}()
	select {
	case <-ready:
	case err := <-p.exited:
		t.Fatalf("ferry %s exited before it was ready: %v", mode, err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("ferry %s not ready within 30 s", mode)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}
