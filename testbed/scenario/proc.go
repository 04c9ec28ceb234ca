package scenario

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// proc is a `ferry edge` or `ferry full` the runner started. The first
// start binds 127.0.0.1 ports of its own choosing; later starts (after a
// kill or stop) take the same ones, as a restarted node would.
type proc struct {
	name, mode, bin string
	dataDir         string
	args            []string // beyond data dir, addresses and log format
	logw            io.Writer

	mu                                         sync.Mutex
	cmd                                        *exec.Cmd
	done                                       chan struct{} // closed once cmd has exited
	kafkaAddr, adminAddr, mqttAddr, mirrorAddr string
	starts                                     int
}

// addrs returns the node's addresses (fixed after the first start).
func (p *proc) addrs() (kafka, admin, mqtt, mirror string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kafkaAddr, p.adminAddr, p.mqttAddr, p.mirrorAddr
}

// running reports whether the process is up.
func (p *proc) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// start starts the node and waits for its ready line (30 s at most). Its
// warnings and errors go to logw, everything it logs to
// <dataDir>.log.
func (p *proc) start() error {
	p.mu.Lock()
	if p.cmd != nil {
		select {
		case <-p.done:
		default:
			p.mu.Unlock()
			return fmt.Errorf("%s: already running", p.name)
		}
	}
	addr := func(a string) string {
		if a == "" {
			return "127.0.0.1:0"
		}
		return a
	}
	args := []string{p.mode, "--data-dir", p.dataDir, "--log-format", "json",
		"--admin-addr", addr(p.adminAddr), "--kafka-addr", addr(p.kafkaAddr)}
	if p.mode == "edge" {
		args = append(args, "--mqtt-addr", addr(p.mqttAddr))
	} else {
		args = append(args, "--mirror-addr", addr(p.mirrorAddr))
	}
	p.mu.Unlock()

	cmd := exec.Command(p.bin, append(args, p.args...)...)
	logFile, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return err
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("%s: %w", p.name, err)
	}
	done := make(chan struct{})
	ready := make(chan readyLine, 1)
	exited := make(chan error, 1)
	// One goroutine reads the log to its end, then reaps the process
	// (Wait must come after the last read), so nothing is written to
	// logw once done is closed.
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			logFile.Write(append(sc.Bytes(), '\n'))
			var line readyLine
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			switch {
			case line.Msg == "ferry "+p.mode+" ready":
				select {
				case ready <- line:
				default:
				}
			case line.Level == "WARN" || line.Level == "ERROR":
				fmt.Fprintf(p.logw, "%s: %s\n", p.name, sc.Bytes())
			}
		}
		io.Copy(io.Discard, stderr)
		logFile.Close()
		exited <- cmd.Wait()
	}()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.starts++
	p.mu.Unlock()
	select {
	case line := <-ready:
		p.mu.Lock()
		p.kafkaAddr, p.adminAddr, p.mirrorAddr = line.Kafka, line.Admin, line.Mirror
		if len(line.MQTT) > 0 {
			p.mqttAddr = line.MQTT[0]
		}
		p.mu.Unlock()
		return nil
	case err := <-exited:
		return fmt.Errorf("%s exited before it was ready (%v); its log: %s", p.name, err, p.logPath())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s not ready within 30 s; its log: %s", p.name, p.logPath())
	}
}

type readyLine struct {
	Msg    string   `json:"msg"`
	Level  string   `json:"level"`
	Kafka  string   `json:"kafka_addr"`
	Admin  string   `json:"admin_addr"`
	MQTT   []string `json:"mqtt_addrs"`
	Mirror string   `json:"mirror_addr"`
}

// signal sends sig and waits for the process to exit (30 s at most).
func (p *proc) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return errors.New(p.name + ": not started")
	}
	select {
	case <-done:
		return fmt.Errorf("%s: not running", p.name)
	default:
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: did not exit within 30 s of %v; killed", p.name, sig)
	}
}

// kill ends the process with SIGKILL if it runs, and waits for it.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// logPath is where the node's full log is.
func (p *proc) logPath() string { return filepath.Clean(p.dataDir + ".log") }
