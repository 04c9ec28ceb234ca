package testbed

import (
	"context"
	"encoding/json"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// centerEdges is the center's GET /api/mirror, as much as the tests read.
type centerEdges struct {
	Edges []struct {
		Edge       string `json:"edge"`
		Connected  bool   `json:"connected"`
		LagKnown   bool   `json:"lag_known"`
		LagRecords int64  `json:"lag_records"`
		Records    int64  `json:"records"`
		LastChunk  string `json:"last_chunk"`
		Topics     []struct {
			Topic      string `json:"topic"`
			LagRecords int64  `json:"lag_records"`
		} `json:"topics"`
	} `json:"edges"`
}

func centerMirror(t *testing.T, adminAddr string) centerEdges {
	t.Helper()
	resp, err := http.Get("http://" + adminAddr + "/api/mirror")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st centerEdges
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStatusPageCenterShowsItsFleet: a `ferry full` receiving two edges,
// one of which then stops, shows its fleet everywhere an operator looks.
// /api/mirror: each edge connected or not, its records, and its copy lag
// (0 once level, from the ends the edge reports). /metrics: the fleet's
// series labelled by edge. `ferry status`: one line per edge. The page:
// an Edges tile (1 of 2 connected), the edges' table and copy-lag chart,
// and no MQTT or device tile or table, which a center does not have. It
// saves a screenshot in testbed/out/ and fails on any script error.
// Before the fleet view the page said "Mirror off / this node mirrors
// nothing" and showed device tiles.
func TestStatusPageCenterShowsItsFleet(t *testing.T) {
	chromium := requireTool(t, "chromium")
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret", "--mirror-token", "gw2=s3cret")
	gw1 := startEdge(t, t.TempDir(), "--mirror-to", center.mirrorAddr, "--mirror-edge-id", "gw1", "--mirror-token", "s3cret")
	gw2 := startEdge(t, t.TempDir(), "--mirror-to", center.mirrorAddr, "--mirror-edge-id", "gw2", "--mirror-token", "s3cret")
	produceKafka(t, gw1.kafkaAddr, "telemetry", 500, 100, "fleet")
	produceKafka(t, gw2.kafkaAddr, "alarms", 300, 100, "fleet")

	// Both copies complete, and both edges have said so (Heads, every 5 s).
	want := map[string]int64{"gw1": 500, "gw2": 300}
	waitFor(t, "both edges level at the center", func() bool {
		st := centerMirror(t, center.adminAddr)
		level := 0
		for _, e := range st.Edges {
			if e.Connected && e.LagKnown && e.LagRecords == 0 && e.Records == want[e.Edge] && e.LastChunk != "" {
				level++
			}
		}
		return level == 2
	})
	gw2.cmd.Process.Signal(syscall.SIGTERM)
	<-gw2.done
	waitFor(t, "the center to see gw2 gone", func() bool {
		st := centerMirror(t, center.adminAddr)
		return len(st.Edges) == 2 && st.Edges[0].Connected && !st.Edges[1].Connected
	})
	if st := centerMirror(t, center.adminAddr); st.Edges[1].Topics[0].Topic != "alarms" || st.Edges[1].Topics[0].LagRecords != 0 {
		t.Errorf("gw2's topics at the center: %+v", st.Edges[1].Topics)
	}

	m := ferryMetrics(t, center.adminAddr, "ferry_mirror_receiver_edge_")
	for series, v := range map[string]float64{
		`ferry_mirror_receiver_edge_connected{edge="gw1"}`:                     1,
		`ferry_mirror_receiver_edge_connected{edge="gw2"}`:                     0,
		`ferry_mirror_receiver_edge_records_total{edge="gw1"}`:                 500,
		`ferry_mirror_receiver_edge_lag_records{edge="gw2",topic="alarms"}`:    0,
		`ferry_mirror_receiver_edge_lag_records{edge="gw1",topic="telemetry"}`: 0,
	} {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}

	out, err := exec.Command(ferryBinary(t), "status", "--admin", "http://"+center.adminAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry status: %v\n%s", err, out)
	}
	for _, want := range []string{"edges:      2 known, 1 connected", "gw1: connected", "gw2: GONE"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("ferry status against the center lacks %q:\n%s", want, out)
		}
	}

	ctx, errs := startBrowser(t, chromium, 1440, 1000)
	url := "http://" + center.adminAddr + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	poll := `(() => {
		const k = (n) => ((document.querySelector('[data-k="' + n + '"]') || {}).textContent || "").trim();
		const shown = (sel) => { const e = document.querySelector(sel); return !!e && !e.hidden && e.offsetParent !== null; };
		const row = (first) => {
			const r = [...document.querySelectorAll("#table-edges tbody tr")].find((r) => r.cells[0] && r.cells[0].textContent === first);
			return r ? [...r.cells].map((c) => c.textContent.trim()) : [];
		};
		const got = {
			fleet: k("fleet"), pill: k("fleet_pill"), out_sub: k("out_sub"), gw1: row("gw1"), gw2: row("gw2"),
			devices_tile: shown('[data-tile="devices"]'), mirror_tile: shown('[data-tile="mirror"]'), fleet_tile: shown('[data-tile="fleet"]'),
			devices_table: shown("#table-devices"), edges_table: shown("#table-edges"),
			fleet_chart: !!document.querySelector("#chart-fleet:not([hidden]) svg path.series, #chart-fleet:not([hidden]) svg circle"),
			mirror_chart: shown("#chart-mirror"), cluster_table: shown("#table-cluster"),
		};
		window.__ferryGot = got;
		const ok = got.fleet === "1 / 2" && got.pill === "1 gone" && !got.out_sub.includes("MQTT") &&
			got.gw1[0] === "gw1" && got.gw1[1] === "connected" && got.gw1[4] === "0" && got.gw1[6].includes("telemetry 0") &&
			got.gw2[0] === "gw2" && got.gw2[1].startsWith("gone") && got.gw2[6].includes("alarms 0") &&
			!got.devices_tile && !got.mirror_tile && got.fleet_tile && !got.devices_table && got.edges_table && got.fleet_chart && !got.mirror_chart && !got.cluster_table;
		return ok ? JSON.stringify(got) : false;
	})()`
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	got, err := chromedp.Run(pctx, chromedp.Poll[string](poll, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	cancel()
	if err != nil {
		last, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__ferryGot || {})`))
		saveScreenshot(t, ctx, "statuspage-center-failed.png")
		t.Fatalf("the center's page did not show its fleet within 60 s: %v\nsaw %s", err, last)
	}
	t.Logf("the center's page: %s", got)
	saveScreenshot(t, ctx, "statuspage-center.png")
	errs.check(t)
}
