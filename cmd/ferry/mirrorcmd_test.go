package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"ferry/edge"
	"ferry/mirror"
)

// `ferry mirror status` asks a running edge's admin API: a table, or JSON;
// a node that mirrors nothing and a node that is not there are errors.
func TestMirrorStatusCommand(t *testing.T) {
	// The center is not running: the link stays down and everything is
	// backlog.
	n, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		MirrorTo: mirror.SenderOptions{Center: "127.0.0.1:1", EdgeID: "gw7", Token: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if _, err := n.Log().CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	admin := "http://" + n.AdminAddr()

	code, out, errOut := ferry(t, "mirror", "status", "--admin", admin)
	if code != 0 || !strings.Contains(out, "edge gw7 -> 127.0.0.1:1: link down") || !strings.Contains(out, "telemetry") {
		t.Fatalf("status: %d %q %q", code, out, errOut)
	}
	code, out, _ = ferry(t, "mirror", "status", "--admin", admin, "--json")
	var st mirror.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.EdgeID != "gw7" || len(st.Partitions) != 2 || st.LinkUp {
		t.Fatalf("status --json: %d %q", code, out)
	}

	center, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	if code, _, errOut := ferry(t, "mirror", "status", "--admin", "http://"+center.AdminAddr()); code != 1 || !strings.Contains(errOut, "mirrors nothing") {
		t.Errorf("a node without a mirror: %d %q", code, errOut)
	}
	if code, _, errOut := ferry(t, "mirror", "status", "--admin", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "asking") {
		t.Errorf("no node: %d %q", code, errOut)
	}
}
