package main

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

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
	// Its failed attempts show, with the reason.
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(out, "(dial): "); {
		if time.Now().After(deadline) {
			t.Fatalf("the status never showed the failed connection: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
		_, out, _ = ferry(t, "mirror", "status", "--admin", admin)
	}
	code, out, _ = ferry(t, "mirror", "status", "--admin", admin, "--json")
	var st mirror.Status
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.EdgeID != "gw7" || len(st.Partitions) != 2 || st.LinkUp {
		t.Fatalf("status --json: %d %q", code, out)
	}
	if st.Failures < 1 || st.LastError == nil || st.LastError.Reason != "dial" {
		t.Errorf("status --json: failures %d, last error %+v; want a dial failure", st.Failures, st.LastError)
	}

	plain, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if code, _, errOut := ferry(t, "mirror", "status", "--admin", "http://"+plain.AdminAddr()); code != 1 || !strings.Contains(errOut, "mirrors nothing") {
		t.Errorf("a node without a mirror: %d %q", code, errOut)
	}

	// A center: its copies of each edge.
	center, err := edge.Start(edge.Options{Mode: "full", DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		MirrorAddr: "127.0.0.1:0", MirrorReceiver: mirror.ReceiverOptions{Tokens: map[string]string{"gw8": "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	if code, out, errOut := ferry(t, "mirror", "status", "--admin", "http://"+center.AdminAddr()); code != 0 || !strings.Contains(out, "no edge has connected") {
		t.Errorf("a center no edge reached: %d %q %q", code, out, errOut)
	}
	gw8, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler),
		MirrorTo: mirror.SenderOptions{Center: center.MirrorAddr(), EdgeID: "gw8", Token: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw8.Close()
	if _, err := gw8.Log().CreateTopic("telemetry", 1, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, _ = ferry(t, "mirror", "status", "--admin", "http://"+center.AdminAddr())
		if code == 0 && strings.Contains(out, "gw8.telemetry") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the center's status never showed gw8.telemetry: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(out, "CONTIGUOUS TO") || !strings.Contains(out, "gw8: connected") || !strings.Contains(out, "EDGE END") {
		t.Errorf("the center's status: %q", out)
	}
	// ferry status: the center's edges, one line each, with the copy lag
	// once the edge has reported its end (before the fleet view: no edge
	// line at all).
	for {
		code, out, _ = ferry(t, "status", "--admin", "http://"+center.AdminAddr())
		if code == 0 && strings.Contains(out, "edges:      1 known, 1 connected, copy lag 0 record(s)") &&
			strings.Contains(out, "gw8: connected, last chunk never, 0.0 records/s, copy lag 0 record(s)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ferry status against the center never showed gw8 level: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	code, out, _ = ferry(t, "mirror", "status", "--admin", "http://"+center.AdminAddr(), "--json")
	var rs mirror.ReceiverStatus
	if code != 0 || json.Unmarshal([]byte(out), &rs) != nil || len(rs.Edges) != 1 || rs.Edges[0].Edge != "gw8" {
		t.Errorf("the center's status --json: %d %q", code, out)
	}
	if code, _, errOut := ferry(t, "mirror", "status", "--admin", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "asking") {
		t.Errorf("no node: %d %q", code, errOut)
	}
}
