package testbed

import (
	"strings"
	"testing"
)

// The checker against synthetic histories: a clean one passes, and each
// kind of anomaly the suite exists to catch is reported.

var pA, pB = tp{"t", 0}, tp{"t", 1}

func cleanHistory() history {
	return history{
		Acked: []op{{pA, 0, "a0", "producer"}, {pA, 1, "a1", "producer"}, {pB, 0, "b0", "producer"}},
		Observed: []op{{pA, 0, "a0", "c1"}, {pA, 1, "a1", "c1"}, {pB, 0, "b0", "c2"},
			{pB, 1, "b1", "c2"}}, // b1: produced, never acknowledged (a timeout), but committed: fine
		Final: map[tp]map[int64]string{pA: {0: "a0", 1: "a1"}, pB: {0: "b0", 1: "b1"}},
	}
}

func TestJepsenCheckerCleanHistoryPasses(t *testing.T) {
	if p := checkHistory(cleanHistory()); len(p) != 0 {
		t.Fatalf("a clean history failed: %v", p)
	}
}

func TestJepsenCheckerCatchesAnomalies(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*history)
		want   string
	}{
		{"lost ack", func(h *history) { delete(h.Final[pA], 1); h.Observed = h.Observed[:1] }, "lost acknowledgement"},
		{"lost ack replaced", func(h *history) { h.Final[pA][1] = "other"; h.Observed = h.Observed[:1] }, "lost acknowledgement"},
		{"wrong offset", func(h *history) { h.Final[pA] = map[int64]string{0: "a0", 2: "a1"}; h.Observed = h.Observed[:1] }, "wrong offset"},
		{"duplicate", func(h *history) { h.Final[pB][2] = "a1" }, "duplicate"},
		{"dirty read gone", func(h *history) { delete(h.Final[pB], 1) }, "dirty read"},
		{"dirty read changed", func(h *history) { h.Final[pB][1] = "b1-other-leader" }, "dirty read"},
		{"two leaders ack one offset", func(h *history) { h.Acked = append(h.Acked, op{pA, 1, "a1-zombie", "producer"}) }, "two values acknowledged"},
		{"consumers disagree", func(h *history) { h.Observed = append(h.Observed, op{pA, 1, "zombie", "c3"}) }, "two values observed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := cleanHistory()
			c.mutate(&h)
			p := checkHistory(h)
			if !strings.Contains(strings.Join(p, "\n"), c.want) {
				t.Fatalf("want a %q problem, got %v", c.want, p)
			}
		})
	}
}

func batch(base, last int64, epoch byte, payload string) replicaBatch {
	b := make([]byte, 16, 16+len(payload))
	b[7] = byte(base)
	b[15] = epoch // bytes 12–15: the partition leader epoch
	return replicaBatch{BaseOffset: base, LastOffset: last, Bytes: append(b, payload...)}
}

func TestJepsenCheckerReplicas(t *testing.T) {
	leader := []replicaBatch{batch(0, 4, 1, "abc"), batch(5, 9, 2, "def"), batch(10, 12, 2, "uncommitted")}
	cases := []struct {
		name     string
		follower []replicaBatch
		hw       int64
		want     string // "" passes
	}{
		{"identical", leader, 13, ""},
		{"epochs differ only", []replicaBatch{batch(0, 4, 7, "abc"), batch(5, 9, 8, "def"), batch(10, 12, 9, "uncommitted")}, 13, ""},
		{"diverges above the hw", []replicaBatch{batch(0, 4, 1, "abc"), batch(5, 9, 2, "def"), batch(10, 11, 3, "other")}, 10, ""},
		{"diverges below the hw", []replicaBatch{batch(0, 4, 1, "abc"), batch(5, 9, 2, "DEF")}, 10, "diverge"},
		{"boundaries differ", []replicaBatch{batch(0, 4, 1, "abc"), batch(5, 7, 2, "def")}, 10, "diverge"},
		{"short of the hw", []replicaBatch{batch(0, 4, 1, "abc")}, 10, "below the high watermark"},
		{"empty", nil, 10, "holds nothing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := checkReplicas(pA, c.hw, map[string][]replicaBatch{"node1": leader, "node2": c.follower})
			got := strings.Join(p, "\n")
			if c.want == "" && len(p) != 0 || c.want != "" && !strings.Contains(got, c.want) {
				t.Fatalf("want %q, got %v", c.want, p)
			}
		})
	}
}

func TestJepsenCheckerURP(t *testing.T) {
	cases := []struct {
		perNode map[string]float64
		want    int
		ok      bool
	}{
		{map[string]float64{"1": 2, "2": 2, "3": 2}, 2, true}, // every node reports the cluster's count
		{map[string]float64{"1": 1, "2": 1, "3": 0}, 2, true}, // each reports what it leads
		{map[string]float64{"1": 0, "2": 0}, 0, true},
		{map[string]float64{"1": 0, "2": 0, "3": 0}, 2, false}, // always 0: the metric lies
		{map[string]float64{"1": 3, "2": 3}, 2, false},
		{map[string]float64{}, 0, false},
	}
	for i, c := range cases {
		if p := checkURP(c.perNode, c.want); (len(p) == 0) != c.ok {
			t.Errorf("case %d: %v want %d: problems %v", i, c.perNode, c.want, p)
		}
	}
}
