package log

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// The crash test: a child process appends with flush.policy=always and
// prints every acknowledged (durable) batch; the parent kills it with SIGKILL
// at a random moment, reopens the log and checks every acknowledged batch.

const crashEnv = "FERRY_LOG_CRASH_CHILD_DIR"

// crashBatch is batch number i of the crash test, the same in both processes.
func crashBatch(i int64) []byte {
	n := 1 + int(i%7)
	recs := make([]Record, n)
	for j := range recs {
		recs[j] = Record{
			Key:       []byte("device-" + strconv.FormatInt(i%13, 10)),
			Value:     []byte(fmt.Sprintf("batch %d record %d %s", i, j, strings.Repeat("x", int(i%97)))),
			Timestamp: 1_700_000_000_000 + i,
		}
	}
	return AppendBatch(nil, recs)
}

// TestCrashChild is the child's body; it does nothing in a normal run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("child process of TestCrashKill9 only")
	}
	first, _ := strconv.ParseInt(os.Getenv(crashEnv+"_FIRST"), 10, 64)
	l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	if _, err := l.Topic("crash"); err != nil {
		if _, err := l.CreateTopic("crash", 2, map[string]string{
			ConfigFlushPolicy: "always", ConfigSegmentBytes: "1048576", ConfigRetentionMs: "-1", ConfigIndexIntervalBytes: "512",
		}); err != nil {
			fmt.Println("error", err)
			os.Exit(3)
		}
	}
	var next atomic.Int64
	next.Store(first)
	var out sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				p, _ := l.Partition("crash", int32(i%2))
				res, err := p.Append(crashBatch(i))
				if err == nil {
					err = p.WaitDurable(context.Background(), res.LastOffset)
				}
				out.Lock()
				if err != nil {
					fmt.Println("error", err)
					os.Exit(3)
				}
				// One write per line: a line is either whole in the pipe or absent.
				os.Stdout.WriteString(fmt.Sprintf("ack %d %d %d %d\n", i%2, res.BaseOffset, res.LastOffset, i))
				out.Unlock()
			}
		}()
	}
	wg.Wait()
}

type ack struct {
	partition        int32
	base, last, each int64
}

func TestCrashKill9(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewSource(int64(os.Getpid())))
	var acked []ack
	for cycle := 0; cycle < 5; cycle++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir, fmt.Sprintf("%s_FIRST=%d", crashEnv, cycle*1_000_000))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = nil
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 50 + rng.Intn(1500)
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) > 0 && f[0] == "error" {
				t.Fatalf("child: %s", sc.Text())
			}
			if len(f) != 5 || f[0] != "ack" {
				continue // test framework chatter
			}
			var a ack
			p, _ := strconv.Atoi(f[1])
			a.partition = int32(p)
			a.base, _ = strconv.ParseInt(f[2], 10, 64)
			a.last, _ = strconv.ParseInt(f[3], 10, 64)
			a.each, _ = strconv.ParseInt(f[4], 10, 64)
			acked = append(acked, a)
			if n++; n == killAfter {
				cmd.Process.Signal(syscall.SIGKILL)
			}
		}
		cmd.Wait()
		if n < killAfter {
			t.Fatalf("cycle %d: child ended after %d acks, before the kill", cycle, n)
		}
		checkAfterCrash(t, dir, acked)
	}
	t.Logf("%d acknowledged batches checked over 5 SIGKILL cycles", len(acked))
}

// checkAfterCrash reopens the log and checks every acknowledged batch,
// density, clean segment ends, and that appends continue at the end.
func checkAfterCrash(t *testing.T, dir string, acked []ack) {
	t.Helper()
	l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	defer l.Close()
	for _, a := range acked {
		p, _ := l.Partition("crash", a.partition)
		want := crashBatch(a.each)
		binary.BigEndian.PutUint64(want, uint64(a.base))
		r, err := p.Read(a.base, 1, nil)
		if err != nil {
			t.Fatalf("acknowledged batch %d at %d-%d: %v", a.each, a.partition, a.base, err)
		}
		if !bytes.Equal(r.Data, want) {
			t.Fatalf("acknowledged batch %d at %d-%d differs after SIGKILL", a.each, a.partition, a.base)
		}
	}
	for part := int32(0); part < 2; part++ {
		p, _ := l.Partition("crash", part)
		next := p.StartOffset()
		for _, s := range p.Segments() {
			sum, err := ScanSegmentFile(s.Path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !sum.OK() || sum.ValidBytes != sum.Size {
				t.Fatalf("%s after recovery: %s (%d of %d bytes valid)", s.Path, sum.Problem, sum.ValidBytes, sum.Size)
			}
			if sum.BaseOffset != next {
				t.Fatalf("%s starts at %d, previous segment ended at %d", s.Path, sum.BaseOffset, next)
			}
			next = sum.NextOffset
		}
		if next != p.EndOffset() {
			t.Fatalf("segments end at %d, partition end offset %d", next, p.EndOffset())
		}
		end := p.EndOffset()
		res, err := p.Append(testBatch(1, 1, "after-crash"))
		if err != nil || res.BaseOffset != end {
			t.Fatalf("append after recovery: %+v %v (end was %d)", res, err, end)
		}
	}
	_ = filepath.Join
}
