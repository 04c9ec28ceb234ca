package scenario

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/testbed/fleet"
)

// runSchedule carries out the faults at their times (timers: the
// schedule is the scenario, not synchronisation), each after its When
// condition holds (a fault waiting for one holds up no other), and undoes
// them after their For. Actions happen one at a time. It returns when
// every action has happened, or ctx is done.
func (r *runner) runSchedule(ctx context.Context) {
	var wg sync.WaitGroup
	var one sync.Mutex // one action at a time
	act := func(f Fault, undo bool, waitErr error) {
		one.Lock()
		what, note, err := r.do(f, undo)
		one.Unlock()
		r.event(what, note, errors.Join(waitErr, err))
	}
	// A stable sort: faults at the same time start in the file's order.
	faults := slices.Clone(r.sc.Faults)
	slices.SortStableFunc(faults, func(a, b Fault) int { return cmp.Compare(a.At.Of(r.dur), b.At.Of(r.dur)) })
	for _, f := range faults {
		if !sleepCtx(ctx, time.Until(r.start.Add(f.At.Of(r.dur)))) {
			break
		}
		run := func() {
			var waitErr error
			if f.When != "" {
				waitErr = r.waitFor(ctx, f)
			}
			act(f, false, waitErr)
			if !f.For.isZero() && sleepCtx(ctx, f.For.Of(r.dur)) {
				act(f, true, nil)
			}
		}
		if f.When == "" && f.For.isZero() {
			run()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			run()
		}()
	}
	wg.Wait()
}

// sleepCtx waits d (a timer), or until ctx is done; it reports whether d
// elapsed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// event records an action that happened and prints it.
func (r *runner) event(what, note string, err error) {
	e := Event{At: time.Since(r.start), What: what, Note: note}
	if r.start.IsZero() {
		e.At = 0
	}
	if err != nil {
		e.Err = err.Error()
	}
	r.evMu.Lock()
	r.events = append(r.events, e)
	r.evMu.Unlock()
	fmt.Fprintf(r.logw, "[%s] event %s\n", r.sc.Name, e)
}

// waitFor polls, for at most 60 s, until the fault's When condition holds.
func (r *runner) waitFor(ctx context.Context, f Fault) error {
	g := r.byID[f.Target]
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, err := r.mirrorStatus(g); err == nil && st.backfilling() {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s was not %s within 60 s", f.Target, f.When)
		}
		time.Sleep(50 * time.Millisecond) // polling, with a deadline
	}
}

// do carries out a fault, or undoes it, and describes it.
func (r *runner) do(f Fault, undo bool) (what, note string, err error) {
	g := r.byID[f.Target]
	p := r.center
	if g != nil {
		p = g.proc
		if st, err := r.mirrorStatus(g); err == nil {
			note = st.String()
		}
	}
	switch {
	case f.Do == "link-down" && !undo:
		return f.Target + ": link down", note, g.link.setDown(true)
	case f.Do == "link-down", f.Do == "link-up":
		return f.Target + ": link up", note, g.link.setDown(false)
	case f.Do == "bandwidth" && !undo:
		// toxiproxy counts in KB/s (1000 bytes); round up.
		kb := int64(math.Ceil(float64(f.Rate) / 1000))
		return fmt.Sprintf("%s: link capped at %s/s", f.Target, bytesString(int64(f.Rate))), note,
			g.link.toxic("bandwidth", "bandwidth", "upstream", map[string]any{"rate": kb})
	case f.Do == "bandwidth":
		return f.Target + ": link cap removed", note, g.link.remove("bandwidth")
	case f.Do == "latency" && !undo:
		attrs := map[string]any{"latency": time.Duration(f.Latency).Milliseconds(), "jitter": time.Duration(f.Jitter).Milliseconds()}
		err := errors.Join(g.link.toxic("latency", "latency", "upstream", attrs), g.link.toxic("latency-back", "latency", "downstream", attrs))
		return fmt.Sprintf("%s: link latency %s ± %s each way", f.Target, time.Duration(f.Latency), time.Duration(f.Jitter)), note, err
	case f.Do == "latency":
		return f.Target + ": link latency removed", note, g.link.remove("latency", "latency-back")
	case f.Do == "reset-peer":
		return f.Target + ": link reset (TCP RST)", note, r.resetPeer(g)
	case f.Do == "clear":
		return f.Target + ": link toxics cleared", note, g.link.remove("bandwidth", "latency", "latency-back", "reset")
	case (f.Do == "kill" || f.Do == "stop") && undo, f.Do == "start":
		return p.name + ": started", note, p.start()
	case f.Do == "kill":
		return p.name + ": killed (SIGKILL)", note, p.signal(syscall.SIGKILL)
	case f.Do == "stop":
		return p.name + ": stopped (SIGTERM)", note, p.signal(syscall.SIGTERM)
	}
	return f.Do, "", fmt.Errorf("unknown action %q", f.Do)
}

// resetPeer resets the link's connections until the edge sees its link
// down (at most 15 s), then lets it reconnect.
func (r *runner) resetPeer(g *gateway) error {
	if err := g.link.toxic("reset", "reset_peer", "upstream", map[string]any{"timeout": 0}); err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	var cut bool
	for !cut && time.Now().Before(deadline) {
		st, err := r.mirrorStatus(g)
		cut = err == nil && !st.LinkUp
		if !cut {
			time.Sleep(20 * time.Millisecond) // polling, with a deadline
		}
	}
	err := g.link.remove("reset")
	if !cut {
		err = errors.Join(err, errors.New("the edge did not see its link go down within 15 s"))
	}
	return err
}

// mirrorState is the part of an edge's GET /api/mirror the runner reads.
type mirrorState struct {
	LinkUp     bool `json:"link_up"`
	Partitions []struct {
		BacklogRecords int64   `json:"backlog_records"`
		OldestAge      float64 `json:"oldest_unshipped_age_seconds"`
	} `json:"partitions"`
}

func (m mirrorState) backlog() (records int64, oldest float64) {
	for _, p := range m.Partitions {
		records += p.BacklogRecords
		oldest = max(oldest, p.OldestAge)
	}
	return records, oldest
}

// backfilling: connected, and shipping records older than 2 s (live
// records are shipped within milliseconds).
func (m mirrorState) backfilling() bool {
	_, oldest := m.backlog()
	return m.LinkUp && oldest > 2
}

func (m mirrorState) String() string {
	n, oldest := m.backlog()
	link := "down"
	if m.LinkUp {
		link = "up"
	}
	if n == 0 {
		return "mirror " + link + ", no backlog"
	}
	return fmt.Sprintf("mirror %s, backlog %d records, oldest %.1fs", link, n, oldest)
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// mirrorStatus reads a gateway's GET /api/mirror.
func (r *runner) mirrorStatus(g *gateway) (mirrorState, error) {
	var st mirrorState
	if !g.proc.running() {
		return st, errors.New(g.spec.ID + " is down")
	}
	_, admin, _, _ := g.proc.addrs()
	resp, err := httpClient.Get("http://" + admin + "/api/mirror")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /api/mirror: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// progress prints a line every Options.Progress until stop: what the
// fleets sent, had acknowledged and failed, what the edges and the center
// hold, and each gateway's link.
func (r *runner) progress(stop <-chan struct{}, center *fleet.Consumer) {
	ckafka, _, _, _ := r.center.addrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(ckafka), kgo.MetadataMinAge(250*time.Millisecond))
	if err != nil {
		return
	}
	defer cl.Close()
	cadm := kadm.NewClient(cl)
	edges := make([]*kadm.Client, len(r.gws))
	for i, g := range r.gws {
		ekafka, _, _, _ := g.proc.addrs()
		ecl, err := kgo.NewClient(kgo.SeedBrokers(ekafka), kgo.MetadataMinAge(250*time.Millisecond))
		if err != nil {
			return
		}
		defer ecl.Close()
		edges[i] = kadm.NewClient(ecl)
	}
	tick := time.NewTicker(r.opts.Progress)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		var sent, acked, failed, online, devices int64
		var edgeSum, centerSum int64
		var links []string
		ctx, cancel := context.WithTimeout(context.Background(), r.opts.Progress)
		for i, g := range r.gws {
			ms := g.mqtt.Summary()
			sent, acked, failed, online, devices = sent+ms.Sent, acked+ms.Acked, failed+ms.Failed, online+ms.Online, devices+int64(ms.Devices)
			if g.producer != nil {
				ps := g.producer.Summary()
				sent, acked, failed = sent+ps.Sent, acked+ps.Acked, failed+ps.Failed
			}
			topics := g.topics(r.sc.Kafka)
			edgeSum += sumEnds(ctx, edges[i], topics...)
			for j := range topics {
				topics[j] = g.spec.ID + "." + topics[j]
			}
			centerSum += sumEnds(ctx, cadm, topics...)
			state := g.link.state()
			if !g.proc.running() {
				state = "EDGE DOWN"
			} else if st, err := r.mirrorStatus(g); err == nil {
				n, _ := st.backlog()
				if !st.LinkUp {
					state += ", mirror down"
				}
				state += fmt.Sprintf(", backlog %d", n)
			}
			links = append(links, fmt.Sprintf("%s[%s]", g.spec.ID, state))
		}
		cancel()
		centerState := ""
		if !r.center.running() {
			centerState = " (CENTER DOWN)"
		}
		fmt.Fprintf(r.logw, "[%s %5.1fs] sent %d acked %d failed %d, devices online %d/%d | edges hold %d, center %d%s, read at center %d (%s) | %s\n",
			r.sc.Name, time.Since(r.start).Seconds(), sent, acked, failed, online, devices, edgeSum, centerSum, centerState,
			center.Records(), center.Latency(), strings.Join(links, " "))
	}
}

// sumEnds sums the end offsets of topics (0 for what cannot be listed).
func sumEnds(ctx context.Context, adm *kadm.Client, topics ...string) int64 {
	lo, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0
	}
	var n int64
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			n += o.Offset
		}
	})
	return n
}

// bytesString writes a byte count the way scenario files do: 64KiB, 1MiB.
func bytesString(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%dMiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}
