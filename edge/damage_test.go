package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// damagedDataDir writes 200 batches of one record to climate-0 through a
// node, stops it, and flips a byte inside the records of batch 5, which
// the index of the active segment covers (an entry every 4 KiB). It
// returns the data directory and the damaged batch's offset.
func damagedDataDir(t *testing.T) (string, int64) {
	t.Helper()
	dir := t.TempDir()
	n := startTestNode(t, dir)
	if _, err := n.Log().CreateTopic("climate", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := n.Log().Partition("climate", 0)
	var victim flog.AppendResult
	var size int
	for i := range 200 {
		b := flog.AppendBatch(nil, []flog.Record{{Value: []byte(fmt.Sprintf("reading %03d", i)), Timestamp: int64(1000 + i)}})
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if i == 5 {
			victim, size = res, len(b)
		}
	}
	seg := p.Segments()[0].Path
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := victim.Position + int64(size) - 3 // the record's value, under the CRC
	var c [1]byte
	f.ReadAt(c[:], at)
	c[0] ^= 0x20
	if _, err := f.WriteAt(c[:], at); err != nil {
		t.Fatal(err)
	}
	f.Close()
	return dir, victim.BaseOffset
}

// A corrupt batch in the active segment is found at start: /readyz and
// the status name the partition and offset, a consumer reaching it gets
// CORRUPT_MESSAGE (not an empty answer it retries forever), and the
// server logs it once, not at every fetch.
func TestCorruptActiveBatchFoundAtStartAndSurfaced(t *testing.T) {
	dir, bad := damagedDataDir(t)
	var logs syncBuffer
	n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })

	code, m := getJSON(t, "http://"+n.AdminAddr()+"/readyz")
	damaged, _ := m["damaged"].([]any)
	if code != 503 || m["status"] != "not ready" || len(damaged) != 1 {
		t.Fatalf("/readyz with a damaged partition: %d %v", code, m)
	}
	d := damaged[0].(map[string]any)
	if d["topic"] != "climate" || d["partition"] != 0.0 || d["offset"] != float64(bad) || !strings.HasSuffix(d["segment"].(string), ".log") {
		t.Fatalf("/readyz damage: %v, want climate-0 at offset %d", d, bad)
	}
	if code, st := getJSON(t, "http://"+n.AdminAddr()+"/api/status"); code != 200 || st["ready"] != false || len(st["damaged"].([]any)) != 1 {
		t.Fatalf("/api/status with a damaged partition: %d ready=%v damaged=%v", code, st["ready"], st["damaged"])
	}

	if code, tv := getJSON(t, "http://"+n.AdminAddr()+"/api/topics/climate"); code != 200 {
		t.Fatalf("/api/topics/climate: %d", code)
	} else if pd, _ := tv["partitions"].([]any)[0].(map[string]any)["damaged"].(map[string]any); pd == nil || pd["offset"] != float64(bad) {
		t.Fatalf("/api/topics/climate partition 0: damaged %v, want offset %d", pd, bad)
	}

	// A franz-go consumer reads up to the damage, then sees the error.
	// franz-go strips retriable fetch errors by default (CORRUPT_MESSAGE
	// is retriable in kerr); KeepRetryableFetchErrors hands them over.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.KeepRetryableFetchErrors(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"climate": {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var got int64
	var fetchErr error
	for fetchErr == nil && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset != got {
				t.Fatalf("record at offset %d, want %d", r.Offset, got)
			}
			got++
		})
		fs.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				fetchErr = err
			}
		})
	}
	if !errors.Is(fetchErr, kerr.CorruptMessage) || got != bad {
		t.Fatalf("consumer: %d record(s) then %v; want %d then CORRUPT_MESSAGE", got, fetchErr, bad)
	}

	// More fetches at the damage: still CORRUPT_MESSAGE, and no new line.
	for range 5 {
		req := kmsg.NewPtrFetchRequest()
		req.MaxBytes = 1 << 20
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic = "climate"
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.FetchOffset, rp.PartitionMaxBytes = bad, 1<<20
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			t.Fatal(err)
		}
		if c := resp.Topics[0].Partitions[0].ErrorCode; c != kerr.CorruptMessage.Code {
			t.Fatalf("fetch at the damage: error %d, want CORRUPT_MESSAGE", c)
		}
	}
	logs.mu.Lock()
	out := logs.b.String()
	logs.mu.Unlock()
	if k := strings.Count(out, `"msg":"fetch failed"`); k != 1 {
		t.Errorf("%d \"fetch failed\" lines for fetches at one damaged batch, want 1:\n%s", k, out)
	}
	if k := strings.Count(out, "corrupt batch"); k != 1 {
		t.Errorf("%d \"corrupt batch\" lines, want 1 (at start):\n%s", k, out)
	}
	if !strings.Contains(out, filepath.Base(d["segment"].(string))) {
		t.Errorf("the start-up line does not name the segment:\n%s", out)
	}
}

// kcat (librdkafka) reports CORRUPT_MESSAGE to the application ("Broker:
// Invalid message", librdkafka's name for it): it reads up to the damage
// and prints the error, where KAFKA_STORAGE_ERROR was retried silently.
func TestCorruptBatchKcatReportsIt(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("kcat is required under CI=true (make deps installs it): %v", err)
		}
		t.Skipf("kcat not installed: %v", err)
	}
	dir, bad := damagedDataDir(t)
	n := startTestNode(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-b", n.KafkaAddr(), "-C", "-t", "climate", "-p", "0", "-o", "beginning", "-f", "%o\n")
	var out, errOut syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	text := func(b *syncBuffer) string {
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.b.String()
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	exited := false
	for !exited && !strings.Contains(text(&errOut), "Broker: Invalid message") && time.Now().Before(deadline) {
		select {
		case <-done:
			exited = true
		case <-time.After(50 * time.Millisecond):
		}
	}
	if !exited {
		cmd.Process.Kill()
		<-done
	}
	lines := strings.Fields(text(&out))
	if !strings.Contains(text(&errOut), "Broker: Invalid message") || len(lines) != int(bad) {
		t.Fatalf("kcat: %d record(s) (want %d), stderr %q", len(lines), bad, text(&errOut))
	}
}
