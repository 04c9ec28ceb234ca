package testbed

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestStatusPage loads a real `ferry edge`'s status page in headless
// Chromium (Debian's chromium, driven over the DevTools protocol by
// chromedp) after a known workload, and waits until the page shows it:
// records in, records out over Kafka, disk used, the one device online,
// the consumer group's lag, the mirror's link up and nothing left to ship,
// and the tables of topics, groups and devices. It saves a desktop and a
// phone screenshot in testbed/out/ and fails on any script error.
func TestStatusPage(t *testing.T) {
	chromium := requireTool(t, "chromium")
	const (
		kafkaRecords = 1000
		mqttMessages = 5
		committedAt  = 400
	)
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	dataDir := t.TempDir()
	addDevice(t, dataDir, "dev1", "pw-dev1")
	edge := startEdge(t, dataDir, "--auth", "registry",
		"--mirror-to", center.mirrorAddr, "--mirror-edge-id", "gw1", "--mirror-token", "s3cret")

	// The workload: Kafka records and MQTT messages into telemetry, a
	// device that stays connected, a group that committed part of the way,
	// and a reader of everything.
	produceKafka(t, edge.kafkaAddr, "telemetry", kafkaRecords, 120, "page")
	dev := registeredDevice(t, edge.mqttAddr, "dev1", "pw-dev1")
	for i := range mqttMessages {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := dev.Publish(ctx, &paho.Publish{Topic: "factory/lyon/dev1/telemetry", QoS: 1, Payload: fmt.Appendf(nil, `{"t":%d}`, 20+i)})
		cancel()
		if err != nil {
			t.Fatalf("MQTT publish: %v", err)
		}
	}
	const total = kafkaRecords + mqttMessages
	if got := sumEnds(endsOf(t, edge.kafkaAddr, "telemetry")); got != total {
		t.Fatalf("telemetry holds %d records, want %d", got, total)
	}
	commitOffset(t, edge.kafkaAddr, "dashboards", "telemetry", 0, committedAt)
	if n := len(consumeAll(t, edge.kafkaAddr, "telemetry")); n != total {
		t.Fatalf("read %d records back, want %d", n, total)
	}
	waitMirrored(t, edge, center, "telemetry")

	// The browser.
	ctx, errs := startBrowser(t, chromium, 1440, 1000)
	url := "http://" + edge.adminAddr + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	// What the page must show: tiles by their data-k, and table rows by
	// their first cell, as the cells' texts. Kafka records out counts
	// every read (waitMirrored and consumeAll each read everything), so
	// it must be at least the records in.
	want := map[string]any{
		"in_total": formatInt(total),
		"devices":  "1",
		"lag":      formatInt(total - committedAt),
		"link":     "link up",
		"mirror":   "0",
		"topics":   []string{"telemetry", "1", formatInt(total)},                         // name, partitions, records
		"groups":   []string{"dashboards", "Empty", "0", formatInt(total - committedAt)}, // name, state, members, lag
		"devrow":   []string{"dev1", "online", "yes", "now"},
	}
	wantJSON, _ := json.Marshal(want)
	// Poll in the page until every figure is there (the sampler records
	// every 5 s and the page refreshes as often); it returns what it saw.
	poll := fmt.Sprintf(`(() => {
		const want = %s, total = %d;
		const k = (n) => ((document.querySelector('[data-k="' + n + '"]') || {}).textContent || "").trim();
		const row = (id, first) => {
			const r = [...document.querySelectorAll("#" + id + " tbody tr")].find((r) => r.cells[0] && r.cells[0].textContent === first);
			return r ? [...r.cells].map((c) => c.textContent.trim()) : [];
		};
		const got = {
			in_total: k("in_total"), devices: k("devices"), lag: k("lag"), link: k("link"), mirror: k("mirror"),
			topics: row("table-topics", "telemetry"), groups: row("table-groups", "dashboards"), devrow: row("table-devices", "dev1"),
			out_sub: k("out_sub"), disk: k("disk"),
		};
		window.__ferryGot = got;
		const same = (a, b) => Array.isArray(b) ? b.every((v, i) => a[i] === v) : a === b;
		const kafkaOut = parseInt(got.out_sub.replace(/,/g, ""), 10);
		const ok = Object.keys(want).every((key) => same(got[key], want[key])) && kafkaOut >= total && !["", "—", "0 B"].includes(got.disk);
		return ok ? JSON.stringify(got) : false;
	})()`, wantJSON, total)
	pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	got, err := chromedp.Run(pctx, chromedp.Poll[string](poll, chromedp.WithPollingInterval(200*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))
	cancel()
	if err != nil {
		last, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__ferryGot || {})`))
		saveScreenshot(t, ctx, "statuspage-failed.png")
		t.Fatalf("the page did not show the workload within 60 s: %v\nwant %s\nsaw  %s", err, wantJSON, last)
	}
	t.Logf("tiles and tables: %v", got)
	saveScreenshot(t, ctx, "statuspage-desktop.png")

	// Hovering a chart at its right edge (the plot ends 8 px before the
	// svg does) shows the values of the newest sample.
	tip, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(() => {
		const svg = document.querySelector("#chart-lag svg"), r = svg.getBoundingClientRect();
		svg.dispatchEvent(new PointerEvent("pointermove", {clientX: r.right - 8, clientY: r.top + r.height / 2, bubbles: true}));
		const tip = document.getElementById("tip");
		return tip.hidden ? "" : tip.textContent;
	})()`))
	if err != nil || !strings.Contains(tip, "total: "+formatInt(total-committedAt)+" records") {
		t.Errorf("hovering the lag chart's newest sample shows %q (%v), want its total lag", tip, err)
	}

	// On a phone: one column for the charts and tables, two tiles a row,
	// charts redrawn to the narrower width.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	pctx, cancel = context.WithTimeout(ctx, 20*time.Second)
	cols, err := chromedp.Run(pctx, chromedp.Poll[map[string]int](`(() => {
		const tracks = (sel) => getComputedStyle(document.querySelector(sel)).gridTemplateColumns.split(" ").length;
		const svg = document.querySelector("#chart-throughput svg");
		return svg && svg.viewBox.baseVal.width <= 390 ? {charts: tracks(".charts"), tables: tracks(".tables"), tiles: tracks(".tiles"),
			overflow: document.documentElement.scrollWidth - window.innerWidth} : false;
	})()`, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	cancel()
	if err != nil {
		t.Fatalf("the charts were not redrawn for a phone's width: %v", err)
	}
	if cols["charts"] != 1 || cols["tables"] != 1 || cols["tiles"] > 2 || cols["overflow"] > 0 {
		t.Errorf("on a phone: %v, want one column of charts and tables, at most two tiles a row, no horizontal scrolling", cols)
	}
	saveScreenshot(t, ctx, "statuspage-phone.png")
	errs.check(t)
}

// addDevice registers a device with a password in a stopped node's data
// directory, allowed to publish under factory/+/{device}/#.
func addDevice(t *testing.T, dataDir, id, password string) {
	t.Helper()
	cmd := exec.Command(ferryBinary(t), "devices", "add", id, "--data-dir", dataDir, "--create-data-dir", "--password-stdin", "--publish", "factory/+/{device}/#")
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ferry devices add %s: %v\n%s", id, err, out)
	}
}

// registeredDevice connects a registered device over MQTT 5 with its
// password; it stays connected until the test ends.
func registeredDevice(t *testing.T, addr, id, password string) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, PacketTimeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 30,
		UsernameFlag: true, Username: id, PasswordFlag: true, Password: []byte(password)})
	if err != nil {
		nc.Close()
		t.Fatalf("connect %s: %v (%+v)", id, err, ca)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

// commitOffset commits offset for one partition as a group with no
// members (an admin tool's commit).
func commitOffset(t *testing.T, addr, group, topic string, partition int32, offset int64) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topic, Partition: partition, At: offset, LeaderEpoch: -1})
	resp, err := kadm.NewClient(cl).CommitOffsets(ctx, group, offs)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("committing %s %s/%d at %d: %v", group, topic, partition, offset, err)
	}
}

// formatInt writes n as the page does (en-US digit grouping).
func formatInt(n int64) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// pageErrors collects the uncaught exceptions and console errors of a page.
type pageErrors struct {
	mu   sync.Mutex
	list []string
}

func (e *pageErrors) add(s string) {
	e.mu.Lock()
	e.list = append(e.list, s)
	e.mu.Unlock()
}

func (e *pageErrors) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.list {
		t.Errorf("the page reported: %s", s)
	}
}

// startBrowser starts headless Chromium with a fresh profile, a window of
// w×h and none of its background connections (the machine's network is
// closed), and returns its context; it is stopped when the test ends.
func startBrowser(t *testing.T, chromium string, w, h int) (context.Context, *pageErrors) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(w, h),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	errs := &pageErrors{}
	if err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := fmt.Sprintf("%s at %s:%d:%d", d.Text, d.URL, d.LineNumber+1, d.ColumnNumber+1)
			if d.Exception != nil {
				msg += ": " + d.Exception.Description
			}
			errs.add(msg)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				errs.add(fmt.Sprintf("console.error %v", ev.Args))
			}
		}
	}); err != nil {
		t.Fatalf("starting %s: %v", chromium, err)
	}
	return ctx, errs
}

// saveScreenshot saves a full-page PNG of the browser's page in
// testbed/out/ (kept out of git), as the test's artifact.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.MkdirAll("out", 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("out", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(path)
	t.Logf("screenshot: %s", abs)
}

// TestStatusPageAdminToken: with --admin-token the page still loads (it is
// open) but the API it reads is not: it asks for the token, and once the
// user pastes it the figures and tables come, and stay after a reload (the
// token is kept in the browser's localStorage).
func TestStatusPageAdminToken(t *testing.T) {
	chromium := requireTool(t, "chromium")
	edge := startEdge(t, t.TempDir(), "--admin-token", "t0ken")
	produceKafka(t, edge.kafkaAddr, "telemetry", 10, 50, "token")
	ctx, errs := startBrowser(t, chromium, 1200, 900)
	url := "http://" + edge.adminAddr + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	state := `(() => {
		const text = (sel) => (document.querySelector(sel) || {}).textContent || "";
		return {form: !document.getElementById("token-form").hidden, live: text("#live-text"), label: text("#token-label"),
			topics: text("#table-topics tbody"), in_total: text('[data-k="in_total"]')};
	})()`
	waitPage := func(what, cond string) map[string]any {
		t.Helper()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		got, err := chromedp.Run(pctx, chromedp.Poll[map[string]any](`(() => { const s = `+state+`; return (`+cond+`) ? s : false; })()`,
			chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
		if err != nil {
			last, _ := chromedp.Run(ctx, chromedp.Evaluate[map[string]any](state))
			saveScreenshot(t, ctx, "statuspage-token-failed.png")
			t.Fatalf("waiting for %s: %v; the page shows %v", what, err, last)
		}
		return got
	}
	waitPage("the token form", `s.form && s.live === "admin token needed" && s.topics.includes("needs a token")`)
	saveScreenshot(t, ctx, "statuspage-token.png")

	paste := func(token string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(document.getElementById("token-input").value = "") === ""`)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(ctx,
			chromedp.SendKeys(chromedp.CSS("#token-input"), token),
			chromedp.Click(chromedp.CSS(`#token-form button[type="submit"]`)),
		); err != nil {
			t.Fatal(err)
		}
	}
	paste("wrong")
	waitPage("the form again for a wrong token", `s.form && s.label.includes("refused") && s.live === "admin token needed"`)
	paste("t0ken")
	waitPage("the figures once the token is given", `!s.form && s.live.startsWith("live") && s.topics.includes("telemetry") && s.in_total === "10"`)
	if err := chromedp.Do(ctx, chromedp.Reload()); err != nil {
		t.Fatal(err)
	}
	waitPage("the figures after a reload, with the kept token", `!s.form && s.live.startsWith("live") && s.topics.includes("telemetry")`)
	errs.check(t)
}
