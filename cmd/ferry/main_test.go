package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/edge"
	"ferry/edge/adminapi"
	flog "ferry/log"
)

// ferry runs the command in-process and returns its exit code and output.
func ferry(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageAndHelp(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Commands:"},
		{[]string{"edge", "--help"}, 0, "Example:"},
		{[]string{"topics", "create", "--help"}, 0, "--partitions"},
		{[]string{"topics", "list", "--help"}, 0, "--json"},
		{[]string{"topics", "describe", "--help"}, 0, "Example:"},
		{[]string{"topics", "delete", "--help"}, 0, "Example:"},
		{[]string{"log", "dump", "--help"}, 0, "--records"},
		{[]string{"log", "verify", "--help"}, 0, "Example:"},
		{[]string{"version", "--help"}, 0, "Example:"},
		{[]string{}, 2, "missing subcommand"},
		{[]string{"nope"}, 2, `unknown command "nope"`},
		{[]string{"topics", "create"}, 2, "want 1 argument"},
		{[]string{"topics", "list", "--bogus"}, 2, "unknown flag"},
		{[]string{"edge", "--log-level", "loud"}, 2, "--log-level"},
	} {
		code, out, errOut := ferry(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ferry %v: exit %d, want %d; output %q does not contain %q", tc.args, code, tc.code, out+errOut, tc.want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := ferry(t, "version", "--json")
	var v map[string]string
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v["version"] != version || v["go"] == "" {
		t.Fatalf("version --json: %d %q", code, out)
	}
	if code, out, _ := ferry(t, "version"); code != 0 || !strings.HasPrefix(out, "ferry "+version) {
		t.Fatalf("version: %d %q", code, out)
	}
	for _, flag := range []string{"--version", "-V"} {
		if code, out, errOut := ferry(t, flag); code != 0 || !strings.HasPrefix(out, "ferry "+version+" (") {
			t.Fatalf("ferry %s: %d %q %q", flag, code, out, errOut)
		}
	}
}

// TestUnknownNamesSuggest: a mistyped flag or command is a usage error
// (exit 2) that names the closest one; a name close to none names nothing.
func TestUnknownNamesSuggest(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"topics", "create", "x", "--partition", "3"}, "unknown flag: --partition, did you mean --partitions?"},
		{[]string{"edge", "--kafka-adr", ":1"}, "did you mean --kafka-addr?"},
		{[]string{"version", "--jsn"}, "did you mean --json?"},
		{[]string{"topcs"}, `unknown command "topcs", did you mean topics?`},
		{[]string{"groups", "reset"}, "did you mean reset-offsets?"},
	} {
		code, _, errOut := ferry(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ferry %v: exit %d, %q; want 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	if code, _, errOut := ferry(t, "produce", "--zzzzzzz"); code != 2 || strings.Contains(errOut, "did you mean") {
		t.Errorf("ferry produce --zzzzzzz: exit %d, %q: want no suggestion", code, errOut)
	}
}

func TestTopicsCommands(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := ferry(t, "topics", "create", "telemetry", "--partitions", "3", "--config", "retention.ms=3600000", "--data-dir", dir, "--create-data-dir"); code != 0 || !strings.Contains(out, "3 partition") {
		t.Fatalf("create: %d %q %q", code, out, errOut)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"topics", "create", "telemetry", "--data-dir", dir}, 1, "already exists"},
		{[]string{"topics", "create", "bad/name", "--data-dir", dir}, 1, "invalid topic name"},
		{[]string{"topics", "create", "x", "--partitions", "0", "--data-dir", dir}, 1, "invalid partition count"},
		{[]string{"topics", "create", "x", "--config", "nope=1", "--data-dir", dir}, 1, `unknown key "nope"`},
		{[]string{"topics", "create", "x", "--config", "retention.ms", "--data-dir", dir}, 2, "want key=value"},
		{[]string{"topics", "describe", "missing", "--data-dir", dir}, 1, "unknown topic"},
		{[]string{"topics", "delete", "missing", "--data-dir", dir}, 1, "unknown topic"},
	} {
		code, out, errOut := ferry(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ferry %v: exit %d (want %d), output %q lacks %q", tc.args, code, tc.code, out+errOut, tc.want)
		}
	}
	// Put records in partition 1 so describe has offsets to show.
	l, err := flog.Open(flog.Options{Dir: edge.LogDir(dir), RetentionCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("telemetry", 1)
	p.Append(flog.AppendBatch(nil, []flog.Record{{Key: []byte("k"), Value: []byte("a"), Timestamp: 1}, {Value: []byte("b"), Timestamp: 2}}))
	l.Close()

	code, out, _ := ferry(t, "topics", "list", "--json", "--data-dir", dir)
	var list []adminapi.TopicView
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0].Name != "telemetry" || list[0].Records != 2 || len(list[0].Partitions) != 3 {
		t.Fatalf("list --json: %d %q", code, out)
	}
	if code, out, _ := ferry(t, "topics", "list", "--data-dir", dir); code != 0 || !regexp.MustCompile(`telemetry\s+3\s+2\s+\d+`).MatchString(out) {
		t.Fatalf("list: %d %q", code, out)
	}
	code, out, _ = ferry(t, "topics", "describe", "telemetry", "--json", "--data-dir", dir)
	var d adminapi.TopicView
	if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
		t.Fatalf("describe --json: %d %q", code, out)
	}
	if len(d.Partitions) != 3 || d.Partitions[1].EndOffset != 2 || d.Partitions[0].EndOffset != 0 {
		t.Fatalf("describe partitions: %+v", d.Partitions)
	}
	if c := d.EffectiveConfigs["retention.ms"]; c.Value != "3600000" || c.Default {
		t.Fatalf("retention.ms: %+v", c)
	}
	if c := d.EffectiveConfigs["segment.bytes"]; !c.Default {
		t.Fatalf("segment.bytes should be a default: %+v", c)
	}
	if code, out, _ := ferry(t, "topics", "describe", "telemetry", "--data-dir", dir); code != 0 || !strings.Contains(out, "retention.ms") || !strings.Contains(out, "PARTITION") {
		t.Fatalf("describe: %d %q", code, out)
	}
	if code, _, errOut := ferry(t, "topics", "delete", "telemetry", "--data-dir", dir); code != 0 {
		t.Fatalf("delete: %q", errOut)
	}
	if code, out, _ := ferry(t, "topics", "list", "--json", "--data-dir", dir); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("after delete: %q", out)
	}
}

// TestDataDirMustHoldFerryState: an offline command refuses a --data-dir
// that does not exist or holds no ferry state (it made an empty directory
// and "added" a device where no node would look), unless
// --create-data-dir asks for a new one.
func TestDataDirMustHoldFerryState(t *testing.T) {
	fastHashes(t)
	missing := filepath.Join(t.TempDir(), "dta")
	empty := t.TempDir()
	runCLICases(t, []cliCase{
		{[]string{"devices", "add", "dev1", "--password", "pw", "--data-dir", missing}, 1, "does not exist (mistyped? --create-data-dir"},
		{[]string{"topics", "list", "--data-dir", empty}, 1, "holds no ferry state"},
		{[]string{"users", "list", "--data-dir", empty}, 1, "holds no ferry state"},
	})
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Fatalf("a refused --data-dir was created: %v", err)
	}
	if entries, _ := os.ReadDir(empty); len(entries) != 0 {
		t.Fatalf("a refused --data-dir was written to: %v", entries)
	}
	runCLICases(t, []cliCase{
		{[]string{"devices", "add", "dev1", "--password", "pw", "--data-dir", missing, "--create-data-dir"}, 0, "added device dev1"},
		{[]string{"devices", "list", "--data-dir", missing}, 0, "dev1"},
		{[]string{"topics", "create", "t", "--data-dir", missing}, 0, "created topic t"},
	})
}

func TestTopicsRefusesARunningBrokersDir(t *testing.T) {
	dir := t.TempDir()
	n, err := edge.Start(edge.Options{DataDir: dir, AdminAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	code, _, errOut := ferry(t, "topics", "list", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "in use by a running ferry") {
		t.Fatalf("exit %d, %q", code, errOut)
	}
}

func TestLogDumpAndVerify(t *testing.T) {
	dir := t.TempDir()
	l, err := flog.Open(flog.Options{Dir: edge.LogDir(dir), RetentionCheckInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	l.CreateTopic("t", 1, nil)
	p, _ := l.Partition("t", 0)
	for i := 0; i < 3; i++ {
		p.Append(flog.AppendBatch(nil, []flog.Record{{Key: []byte("dev1"), Value: []byte(`{"t":21.5}`), Timestamp: 1000 + int64(i)}}))
	}
	l.Close()
	seg := filepath.Join(edge.LogDir(dir), "t-0", "00000000000000000000.log")

	code, out, _ := ferry(t, "log", "dump", seg, "--records", "--json")
	var dump struct {
		Files []fileJSON `json:"files"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &dump) != nil || len(dump.Files) != 1 {
		t.Fatalf("dump --json: %d %q", code, out)
	}
	bs := dump.Files[0].Batches
	if len(bs) != 3 || bs[2].BaseOffset != 2 || len(bs[2].RecordList) != 1 || *bs[2].RecordList[0].Value != `{"t":21.5}` || !bs[0].CRCOK {
		t.Fatalf("dump batches: %+v", bs)
	}
	if code, out, _ := ferry(t, "log", "dump", filepath.Join(edge.LogDir(dir), "t-0"), "--records"); code != 0 || !strings.Contains(out, `key="dev1"`) {
		t.Fatalf("dump text: %d %q", code, out)
	}
	if code, out, _ := ferry(t, "log", "verify", edge.LogDir(dir)); code != 0 || !strings.Contains(out, "0 damaged") {
		t.Fatalf("verify clean: %d %q", code, out)
	}

	// Flip a byte inside the second batch: verify must exit 1 and say where.
	b, _ := os.ReadFile(seg)
	b[len(b)/2] ^= 0xff
	os.WriteFile(seg, b, 0o644)
	code, out, _ = ferry(t, "log", "verify", seg, "--json")
	var v struct {
		OK    bool          `json:"ok"`
		Files []segmentJSON `json:"files"`
	}
	if code != 1 || json.Unmarshal([]byte(out), &v) != nil || v.OK || v.Files[0].OK || v.Files[0].Batches != 1 || v.Files[0].BaseOffset != 0 || v.Files[0].NextOffset != 1 || !strings.Contains(v.Files[0].Problem, "CRC") {
		t.Fatalf("verify damaged: %d %q", code, out)
	}
	// The key style of every other command's JSON (it was Go's: "BaseOffset").
	for _, key := range []string{`"path":`, `"base_offset":`, `"valid_bytes":`, `"next_offset":`, `"problem":`} {
		if !strings.Contains(out, key) {
			t.Errorf("verify --json lacks %s: %s", key, out)
		}
	}
	for _, key := range regexp.MustCompile(`"([A-Za-z_]+)":`).FindAllStringSubmatch(out, -1) {
		if key[1] != strings.ToLower(key[1]) {
			t.Errorf("verify --json has the key %q, want snake_case", key[1])
		}
	}
	if code, out, _ := ferry(t, "log", "verify", seg); code != 1 || !strings.Contains(out, "DAMAGED") {
		t.Fatalf("verify damaged (text): %d %q", code, out)
	}
}

// TestEdgeShutsDownCleanlyOnSIGTERM runs the real binary: it must come up,
// answer /readyz, and on SIGTERM stop, fsync, close and exit 0, leaving a
// data directory that reopens with its topics.
func TestEdgeShutsDownCleanlyOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	if out, err := exec.Command(bin, "topics", "create", "events", "--partitions", "2", "--data-dir", dir, "--create-data-dir").CombinedOutput(); err != nil {
		t.Fatalf("topics create: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "edge", "--data-dir", dir, "--admin-addr", "127.0.0.1:0", "--kafka-addr", "127.0.0.1:0", "--mqtt-addr", "127.0.0.1:0", "--log-format", "json")
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()

	// The ready line names the bound admin address.
	// The scanner reads stderr to its end (the process exiting) before
	// cmd.Wait, which closes the pipe and would lose the last lines.
	addrCh := make(chan string, 1)
	scanned := make(chan struct{})
	var logs bytes.Buffer
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil {
				if a, ok := line["admin_addr"].(string); ok {
					select {
					case addrCh <- a:
					default:
					}
				}
			}
		}
	}()
	var addr string
	select {
	case addr = <-addrCh:
	case <-scanned:
		t.Fatalf("ferry edge ended before its ready line:\n%s", logs.String())
	case <-time.After(30 * time.Second):
		t.Fatal("no ready line from ferry edge")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/readyz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-scanned:
	case <-time.After(15 * time.Second):
		t.Fatal("ferry edge did not exit within 15 s of SIGTERM")
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ferry edge exited with %v; logs:\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "shutdown complete") {
		t.Fatalf("no shutdown-complete line:\n%s", logs.String())
	}
	out, err := exec.Command(bin, "topics", "list", "--json", "--data-dir", dir).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `"name":"events"`) {
		t.Fatalf("after restart: %v %s", err, out)
	}
}
