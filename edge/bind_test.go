package edge

import (
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A busy port is found before any state is created: the node fails with
// the listener's error, and a fresh data directory stays without a log.
func TestBusyPortFoundBeforeAnyState(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, tc := range []struct {
		name string
		opts Options
		says string
	}{
		{"admin", Options{AdminAddr: busy.Addr().String(), KafkaAddr: "127.0.0.1:0"}, "admin listener"},
		{"mqtt", Options{AdminAddr: "127.0.0.1:0", MQTTAddr: busy.Addr().String()}, "mqtt listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			opts := tc.opts
			opts.DataDir, opts.Logger = dir, slog.New(slog.NewTextHandler(io.Discard, nil))
			n, err := Start(opts)
			if err == nil {
				n.Close()
				t.Fatal("started on a busy port")
			}
			if !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), "address already in use") {
				t.Fatalf("error %q, want the %s's", err, tc.says)
			}
			if _, err := os.Stat(LogDir(dir)); !os.IsNotExist(err) {
				t.Fatalf("the log was opened before the busy port was found: %v", err)
			}
			// The listeners bound before the failure are closed again.
			if n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", Logger: opts.Logger}); err != nil {
				t.Fatalf("start after the failure: %v", err)
			} else {
				n.Close()
			}
		})
	}
}
