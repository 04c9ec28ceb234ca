package testbed

// BenchmarkFootprint: the footprint targets of issue 7 (idle RSS of
// `ferry edge` ≤ 30 MiB, binary ≤ 30 MiB), measured on the release build.
//
//	go test -run '^$' -bench BenchmarkFootprint -benchtime=1x -timeout 15m ./testbed
//
// FOOTPRINT_DEVICES (default "1000,10000") lists the device counts to step
// through; FOOTPRINT_IDLE_SECONDS (10) is how long each level stays idle
// before its RSS is read.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// footprintTarget is issue 7's limit for both the binary and idle RSS.
const footprintTarget = 30 << 20

// releaseArches are the targets of `make build` and `make cross`.
var releaseArches = []struct{ name, goarch, goarm string }{
	{"amd64", "amd64", ""},
	{"arm64", "arm64", ""},
	{"armv7", "arm", "7"},
}

// buildRelease builds cmd/ferry as the Makefile does (static, -trimpath,
// -ldflags '-s -w') for one architecture.
func buildRelease(tb testing.TB, out, goarch, goarm string) {
	tb.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "../cmd/ferry")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch)
	if goarm != "" {
		cmd.Env = append(cmd.Env, "GOARM="+goarm)
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build GOARCH=%s: %v\n%s", goarch, err, b)
	}
}

func fileSize(tb testing.TB, path string) int64 {
	tb.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return fi.Size()
}

// procStatusKB returns the kB fields of /proc/PID/status named.
func procStatusKB(tb testing.TB, pid int, names ...string) map[string]int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	return parseKB(string(b), names)
}

// parseKB reads "Name:   123 kB" lines.
func parseKB(text string, names []string) map[string]int64 {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]int64{}
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !want[strings.TrimSuffix(f[0], ":")] {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
			out[strings.TrimSuffix(f[0], ":")] = v
		}
	}
	return out
}

// smapsByMapping sums Rss (kB) per mapping name in /proc/PID/smaps
// ("[anon]" for anonymous memory), largest first.
func smapsByMapping(text string) []mappingRSS {
	sums := map[string]int64{}
	name := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":") {
			name = "[anon]"
			if len(f) >= 6 {
				name = f[5]
			}
			continue
		}
		if f[0] == "Rss:" && len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			sums[name] += v
		}
	}
	var out []mappingRSS
	for n, v := range sums {
		if v > 0 {
			out = append(out, mappingRSS{n, v})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].kb > out[j].kb || out[i].kb == out[j].kb && out[i].name < out[j].name
	})
	return out
}

type mappingRSS struct {
	name string
	kb   int64
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func BenchmarkFootprint(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	dir := b.TempDir()
	native := ""
	for _, a := range releaseArches {
		out := filepath.Join(dir, "ferry-linux-"+a.name)
		buildRelease(b, out, a.goarch, a.goarm)
		size := fileSize(b, out)
		verdict := "met"
		if size > footprintTarget {
			verdict = "MISSED"
		}
		b.Logf("binary linux/%s (stripped, static): %.1f MiB (target ≤ 30 MiB: %s)", a.name, mib(size), verdict)
		b.ReportMetric(mib(size), "MiB-bin-"+a.name)
		if a.goarch == runtime.GOARCH {
			native = out
		}
	}
	if native == "" {
		b.Skipf("no release build runs on GOARCH=%s", runtime.GOARCH)
	}

	var levels []int
	for _, s := range strings.Split(envString("FOOTPRINT_DEVICES", "1000,10000"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && n > 0 {
			levels = append(levels, n)
		}
	}
	sort.Ints(levels)
	idleFor := time.Duration(envInt("FOOTPRINT_IDLE_SECONDS", 10)) * time.Second
	lim := raiseNofile(b)

	// `ferry edge` on its defaults, a fresh data dir; only the listeners
	// move to free loopback ports.
	fp := startFerryBin(b, native, "", "edge", []string{"--data-dir", filepath.Join(dir, "data"), "--mqtt-addr", "127.0.0.1:0"})
	pid := fp.cmd.Process.Pid
	time.Sleep(idleFor / 2)
	st := procStatusKB(b, pid, "VmRSS", "RssAnon", "RssFile", "VmHWM")
	idle := st["VmRSS"] << 10
	verdict := "met"
	if idle > footprintTarget {
		verdict = "MISSED"
	}
	b.Logf("idle ferry edge: VmRSS %.1f MiB (anon %.1f, file %.1f; peak %.1f) — target ≤ 30 MiB: %s",
		mib(idle), mib(st["RssAnon"]<<10), mib(st["RssFile"]<<10), mib(st["VmHWM"]<<10), verdict)
	if sm, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid)); err == nil {
		for i, m := range smapsByMapping(string(sm)) {
			if i == 5 {
				break
			}
			name := m.name
			if name == native {
				name = "the ferry binary (text, rodata, data)"
			}
			b.Logf("  idle RSS by mapping: %7.1f MiB %s", float64(m.kb)/1024, name)
		}
	}
	if roll, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid)); err == nil {
		r := parseKB(string(roll), []string{"Pss", "Pss_Anon", "Pss_File"})
		b.Logf("  smaps_rollup: Pss %.1f MiB (anon %.1f, file %.1f)", float64(r["Pss"])/1024, float64(r["Pss_Anon"])/1024, float64(r["Pss_File"])/1024)
	}
	logGoMem(b, fp, 0)
	b.ReportMetric(mib(idle), "MiB-rss-idle")
	b.ReportMetric(mib(st["RssAnon"]<<10), "MiB-rss-anon-idle")

	var conns []*idleClient
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	pingDone := make(chan struct{})
	defer close(pingDone)
	var connMu sync.Mutex
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-pingDone:
				return
			case <-t.C:
				connMu.Lock()
				for _, c := range conns {
					c.ping()
				}
				connMu.Unlock()
			}
		}
	}()
	for _, n := range levels {
		if lim < uint64(n)+256 {
			b.Logf("skipping %d devices: open-files limit %d (raise the hard limit: ulimit -Hn)", n, lim)
			continue
		}
		from := len(conns)
		t0 := time.Now()
		added := connectIdle(b, fp.mqttAddr, from, n-from)
		connMu.Lock()
		conns = append(conns, added...)
		connMu.Unlock()
		b.Logf("%d devices connected (%d new in %v), idling %v", n, n-from, time.Since(t0).Round(time.Millisecond), idleFor)
		time.Sleep(idleFor)
		rss := rssBytes(b, pid)
		b.Logf("%d idle devices: VmRSS %.1f MiB (%.1f KiB per device over idle)", n, mib(rss), float64(rss-idle)/float64(n)/1024)
		logGoMem(b, fp, n)
		b.ReportMetric(mib(rss), fmt.Sprintf("MiB-rss-%ddev", n))
	}
}

func envString(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// connectIdle opens n idle MQTT 3.1.1 connections (ids from first on),
// 64 at a time, printing progress every second.
func connectIdle(b *testing.B, addr string, first, n int) []*idleClient {
	conns := make([]*idleClient, n)
	var connected atomic.Int64
	var errMu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(os.Stderr, "  footprint: %d of %d connected\n", first+int(connected.Load()), first+n)
			}
		}
	}()
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			c, err := dialIdle(ctx, addr, fmt.Sprintf("fp%06d", first+i), 60)
			if err != nil {
				errMu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				errMu.Unlock()
				return
			}
			conns[i] = c
			connected.Add(1)
		}()
	}
	wg.Wait()
	close(done)
	if firstErr != nil {
		for _, c := range conns {
			if c != nil {
				c.c.Close()
			}
		}
		b.Fatalf("%d of %d connected; first error: %v", connected.Load(), n, firstErr)
	}
	return conns
}

// logGoMem logs where the Go runtime says ferry's memory is.
func logGoMem(b *testing.B, fp *ferryProc, devices int) {
	m := ferryMetrics(b, fp.adminAddr, "go_memstats_", "go_goroutines")
	b.Logf("  %d devices: heap in use %.1f MiB, heap idle %.1f (released %.1f), stacks %.1f MiB, Go sys %.1f MiB, %.0f goroutines",
		devices, m["go_memstats_heap_inuse_bytes"]/(1<<20), m["go_memstats_heap_idle_bytes"]/(1<<20),
		m["go_memstats_heap_released_bytes"]/(1<<20), m["go_memstats_stack_inuse_bytes"]/(1<<20),
		m["go_memstats_sys_bytes"]/(1<<20), m["go_goroutines"])
}
