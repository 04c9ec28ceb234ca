package edge

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func startOpts(dir string) Options {
	return Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}
}

// A damaged state file stops the node with one line that names the file
// and says what is safe to do.
func TestDamagedStateFileNamedWithAdvice(t *testing.T) {
	for file, says := range map[string]string{
		"devices.db":            "empty device registry",
		"kafka-groups.db":       "auto.offset.reset",
		"kafka-producer-ids.db": "restore it from a backup",
		"mqtt-sessions.db":      "without MQTT sessions",
		"log/topics.db":         "never move it away",
	} {
		t.Run(file, func(t *testing.T) {
			dir := t.TempDir()
			n, err := Start(startOpts(dir))
			if err != nil {
				t.Fatal(err)
			}
			n.Close()
			path := filepath.Join(dir, file)
			if err := os.WriteFile(path, []byte(strings.Repeat("not a bbolt file ", 512)), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = Start(startOpts(dir))
			if err == nil {
				t.Fatal("started on a damaged state file")
			}
			msg := err.Error()
			if !strings.Contains(msg, path+" is damaged (invalid database)") || !strings.Contains(msg, "copy the data directory aside") ||
				!strings.Contains(msg, says) || strings.Contains(msg, "\n") {
				t.Fatalf("error %q: want one line naming %s, saying %q", msg, path, says)
			}
		})
	}
}

// The data directory carries its format version: written at the first
// start, and a newer one is refused, clearly.
func TestDataDirFormatVersion(t *testing.T) {
	dir := t.TempDir()
	n, err := Start(startOpts(dir))
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	if b, err := os.ReadFile(filepath.Join(dir, FormatFile)); err != nil || string(b) != "1\n" {
		t.Fatalf("%s after the first start: %q, %v", FormatFile, b, err)
	}
	if n, err = Start(startOpts(dir)); err != nil {
		t.Fatalf("restart on its own format: %v", err)
	}
	n.Close()
	os.WriteFile(filepath.Join(dir, FormatFile), []byte("2\n"), 0o644)
	if _, err := Start(startOpts(dir)); err == nil || !strings.Contains(err.Error(), "written by a newer ferry") || !strings.Contains(err.Error(), "format 2") {
		t.Fatalf("a newer format: %v", err)
	}
	os.WriteFile(filepath.Join(dir, FormatFile), []byte("garbage\n"), 0o644)
	if _, err := Start(startOpts(dir)); err == nil || !strings.Contains(err.Error(), "not a format version") {
		t.Fatalf("a damaged format file: %v", err)
	}
	// A data directory from before the file: format 1, the file added.
	os.Remove(filepath.Join(dir, FormatFile))
	if n, err = Start(startOpts(dir)); err != nil {
		t.Fatalf("a directory without the file: %v", err)
	}
	n.Close()
	if _, err := os.Stat(filepath.Join(dir, FormatFile)); err != nil {
		t.Fatal(err)
	}
}
