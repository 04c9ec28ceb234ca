package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ferry/edge"
	flog "ferry/log"
)

// startDataDirNode starts a node on dir (127.0.0.1, no MQTT).
func startDataDirNode(t *testing.T, dir string) (*edge.Node, string) {
	t.Helper()
	t.Setenv("FERRY_ADMIN", "")
	t.Setenv("FERRY_ADMIN_TOKEN", "")
	n, err := edge.Start(edge.Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0",
		Logger: slog.New(slog.DiscardHandler), KafkaGroupInitialRebalanceDelay: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, "http://" + n.AdminAddr()
}

// The way out of a damaged partition, end to end: the node reports the
// damage, ferry consume fails on it instead of waiting forever, ferry log
// truncate refuses while the node runs, then backs up and cuts at the
// damaged offset, and the node starts ready, taking and serving records
// from there.
func TestLogTruncateAtADamagedBatch(t *testing.T) {
	dir := t.TempDir()
	n, _ := startDataDirNode(t, dir)
	if _, err := n.Log().CreateTopic("climate", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := n.Log().Partition("climate", 0)
	var victim flog.AppendResult
	var victimLen int
	var want strings.Builder
	for i := range 200 {
		v := fmt.Sprintf("reading %03d", i)
		b := flog.AppendBatch(nil, []flog.Record{{Value: []byte(v), Timestamp: int64(1000 + i)}})
		res, err := p.Append(b)
		if err != nil {
			t.Fatal(err)
		}
		if i == 7 {
			victim, victimLen = res, len(b)
		}
		if i < 7 {
			want.WriteString(v + "\n")
		}
	}
	seg := p.Segments()[0].Path
	n.Close()
	f, err := os.OpenFile(seg, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{'#'}, victim.Position+int64(victimLen)-2); err != nil { // inside the value, under the CRC
		t.Fatal(err)
	}
	f.Close()
	damaged, _ := os.ReadFile(seg)
	bad := victim.BaseOffset

	n, admin := startDataDirNode(t, dir)
	runCLICases(t, []cliCase{
		{[]string{"status", "--admin", admin}, 0, fmt.Sprintf("DAMAGED:    climate-0 at offset %d", bad)},
		{[]string{"topics", "describe", "climate", "--admin", admin}, 0, fmt.Sprintf("DAMAGED: partition 0 at offset %d", bad)},
		{[]string{"log", "truncate", "--data-dir", dir, "--topic", "climate", "--partition", "0", "--offset", fmt.Sprint(bad)}, 1, "in use by a running ferry"},
		{[]string{"log", "truncate", "--data-dir", dir, "--topic", "climate", "--partition", "0"}, 2, "--offset is required"},
	})
	code, out, errOut := ferry(t, "consume", "climate", "--from-beginning", "--exit", "--admin", admin)
	if code != 1 || out != want.String() || !strings.Contains(errOut, "CORRUPT_MESSAGE") || !strings.Contains(errOut, "ferry log truncate") {
		t.Fatalf("consume up to the damage: exit %d, %d byte(s) out (want %d), %q", code, len(out), want.Len(), errOut)
	}
	n.Close()

	runCLICases(t, []cliCase{
		{[]string{"log", "truncate", "--data-dir", dir, "--topic", "nope", "--partition", "0", "--offset", "1"}, 1, "unknown topic"},
		{[]string{"log", "truncate", "--data-dir", filepath.Join(dir, "typo"), "--topic", "climate", "--partition", "0", "--offset", "1"}, 1, "does not exist"},
	})
	backup := filepath.Join(t.TempDir(), "bk")
	res := ferryJSON[truncateJSON](t, "log", "truncate", "--data-dir", dir, "--topic", "climate", "--partition", "0",
		"--offset", fmt.Sprint(bad), "--backup-dir", backup, "--json")
	if res.EndOffset != bad || res.PreviousEndOffset != 200 || res.DamagedOffset != bad || !res.DamageCleared || res.BackupDir != backup {
		t.Fatalf("truncate --json: %+v", res)
	}
	if got, err := os.ReadFile(filepath.Join(backup, filepath.Base(seg))); err != nil || !bytes.Equal(got, damaged) {
		t.Fatalf("the backup of %s is not the damaged segment as it was: %v", filepath.Base(seg), err)
	}
	// Again: nothing left to cut.
	runCLICases(t, []cliCase{{[]string{"log", "truncate", "--data-dir", dir, "--topic", "climate", "--partition", "0", "--offset", fmt.Sprint(bad)}, 0, "nothing cut"}})

	n, admin = startDataDirNode(t, dir)
	resp, err := http.Get(admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/readyz after the cut: %d", resp.StatusCode)
	}
	withStdin(t, "after 1\nafter 2\n")
	runCLICases(t, []cliCase{{[]string{"produce", "climate", "--admin", admin}, 0, "produced 2 record(s)"}})
	code, out, errOut = ferry(t, "consume", "climate", "--from-beginning", "--exit", "--admin", admin)
	if code != 0 || out != want.String()+"after 1\nafter 2\n" {
		t.Fatalf("consume after the cut: exit %d, %q, %q", code, out, errOut)
	}
	if p, _ := n.Log().Partition("climate", 0); p.EndOffset() != bad+2 {
		t.Fatalf("end offset %d, want %d", p.EndOffset(), bad+2)
	}
}

// Offline commands refuse a data directory a newer ferry wrote.
func TestOfflineCommandsRefuseANewerDataFormat(t *testing.T) {
	dir := t.TempDir()
	n, _ := startDataDirNode(t, dir)
	n.Close()
	if err := os.WriteFile(filepath.Join(dir, edge.FormatFile), []byte("7\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runCLICases(t, []cliCase{
		{[]string{"topics", "list", "--data-dir", dir}, 1, "written by a newer ferry"},
		{[]string{"devices", "list", "--data-dir", dir}, 1, "written by a newer ferry"},
		{[]string{"log", "truncate", "--data-dir", dir, "--topic", "t", "--partition", "0", "--offset", "0"}, 1, "written by a newer ferry"},
	})
}

// ferry log truncate refuses an offset below the partition's start.
func TestLogTruncateRefusesBelowTheStart(t *testing.T) {
	dir := t.TempDir()
	n, _ := startDataDirNode(t, dir)
	if _, err := n.Log().CreateTopic("copy", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := n.Log().Partition("copy", 0)
	b := flog.AppendBatch(nil, []flog.Record{{Value: []byte("v"), Timestamp: 1}})
	binary.BigEndian.PutUint64(b[0:8], 10) // a copy starting at offset 10
	if _, err := p.AppendAt(b); err != nil {
		t.Fatal(err)
	}
	if p.StartOffset() != 10 {
		t.Fatalf("start offset %d, want 10", p.StartOffset())
	}
	n.Close()
	runCLICases(t, []cliCase{
		{[]string{"log", "truncate", "--data-dir", dir, "--topic", "copy", "--partition", "0", "--offset", "5"}, 1, "below copy-0's start offset 10"},
	})
	if entries, _ := os.ReadDir(filepath.Join(dir, "backup")); len(entries) != 0 {
		t.Fatalf("a refused cut made a backup: %v", entries)
	}
}
