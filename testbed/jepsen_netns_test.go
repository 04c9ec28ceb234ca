package testbed

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// netLab is a small network the test builds itself with `ip netns`: one
// namespace per node, each with a veth pair into a hub namespace holding
// a bridge, and one veth pair from the test's own namespace into the hub,
// so the test (its clients) reaches every node. The only change to the
// test's namespace is that one veth and its /24; everything else lives in
// namespaces named after the test process, deleted when the test ends,
// even on failure (and swept at the next start if the process died).
//
// A partition is made inside the nodes' namespaces with blackhole routes
// to the peers' addresses: the nodes cut off from one another stay
// reachable from the test, as a zombie leader stays reachable from its
// clients.
type netLab struct {
	t      testing.TB
	prefix string // namespace and interface names start with it
	subnet string // "10.213.S"
	nodes  int
	cut    map[[2]int]bool // blackholed pairs (i < j)
}

const netLabPrefix = "fj"

// newNetLab builds the namespaces for n nodes. Without the capability (not
// root, no ip) it skips the test, except under CI=true (which runs as
// root), where it fails.
func newNetLab(t testing.TB, n int) *netLab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		netLabUnavailable(t, err)
	}
	sweepNetLabs()
	l := &netLab{t: t, prefix: fmt.Sprintf("%s%d%c", netLabPrefix, os.Getpid(), 'a'+rand.IntN(26)), nodes: n, cut: map[[2]int]bool{}}
	if err := l.run("ip", "netns", "add", l.hub()); err != nil {
		netLabUnavailable(t, err)
	}
	t.Cleanup(l.remove)
	for s := 0; s < 50; s++ { // a /24 nothing here routes yet
		cand := fmt.Sprintf("10.213.%d", 1+rand.IntN(250))
		if out, _ := exec.Command("ip", "route", "get", cand+".254").CombinedOutput(); !strings.Contains(string(out), "10.213.") || strings.Contains(string(out), "via") {
			l.subnet = cand
			break
		}
	}
	if l.subnet == "" {
		t.Fatal("netlab: no free 10.213.x.0/24")
	}
	steps := [][]string{
		{"ip", "-n", l.hub(), "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", l.hub(), "link", "set", "br0", "up"},
		{"ip", "-n", l.hub(), "link", "set", "lo", "up"},
		// The test's way in.
		{"ip", "link", "add", l.prefix + "r", "type", "veth", "peer", "name", "up0", "netns", l.hub()},
		{"ip", "-n", l.hub(), "link", "set", "up0", "master", "br0", "up"},
		{"ip", "addr", "add", l.subnet + ".254/24", "dev", l.prefix + "r"},
		{"ip", "link", "set", l.prefix + "r", "up"},
	}
	for i := 0; i < n; i++ {
		ns := l.ns(i)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "-n", l.hub(), "link", "add", fmt.Sprintf("up%d", i+1), "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "-n", l.hub(), "link", "set", fmt.Sprintf("up%d", i+1), "master", "br0", "up"},
			[]string{"ip", "-n", ns, "addr", "add", l.ip(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, s := range steps {
		if err := l.run(s...); err != nil {
			netLabUnavailable(t, err)
		}
	}
	return l
}

func netLabUnavailable(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("network namespaces are required under CI=true (it runs as root): %v", err)
	}
	t.Skipf("cannot make network namespaces here (needs root and ip): %v", err)
}

func (l *netLab) hub() string     { return l.prefix + "-hub" }
func (l *netLab) ns(i int) string { return fmt.Sprintf("%s-n%d", l.prefix, i+1) }

// ip is node i's address (0-based).
func (l *netLab) ip(i int) string { return fmt.Sprintf("%s.%d", l.subnet, i+1) }

// wrap is the command prefix that runs a program in node i's namespace.
func (l *netLab) wrap(i int) []string { return []string{"ip", "netns", "exec", l.ns(i)} }

func (l *netLab) run(args ...string) error {
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// isolate cuts node i off from every other node (both ways); the test
// still reaches it.
func (l *netLab) isolate(i int) {
	l.t.Helper()
	for j := 0; j < l.nodes; j++ {
		if j != i {
			l.setCut(i, j, true)
		}
	}
}

// heal removes every cut.
func (l *netLab) heal() {
	l.t.Helper()
	for p := range l.cut {
		l.setCut(p[0], p[1], false)
	}
}

func (l *netLab) setCut(i, j int, cut bool) {
	l.t.Helper()
	if i > j {
		i, j = j, i
	}
	if l.cut[[2]int{i, j}] == cut {
		return
	}
	verb := "add"
	if !cut {
		verb = "del"
	}
	for _, p := range [][2]int{{i, j}, {j, i}} {
		if err := l.run("ip", "-n", l.ns(p[0]), "route", verb, "blackhole", l.ip(p[1])+"/32"); err != nil {
			l.t.Fatal(err)
		}
	}
	if cut {
		l.cut[[2]int{i, j}] = true
	} else {
		delete(l.cut, [2]int{i, j})
	}
}

// remove deletes the namespaces (their veths go with them, the test's end
// too, as its peer is in the hub).
func (l *netLab) remove() {
	for i := 0; i < l.nodes; i++ {
		exec.Command("ip", "netns", "del", l.ns(i)).Run()
	}
	exec.Command("ip", "netns", "del", l.hub()).Run()
	exec.Command("ip", "link", "del", l.prefix+"r").Run()
}

// sweepNetLabs deletes namespaces left by test processes that died
// without cleaning up (their pid is in the name).
func sweepNetLabs() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(name, netLabPrefix) {
			continue
		}
		digits := strings.TrimLeft(name[len(netLabPrefix):], "0123456789")
		pid, err := strconv.Atoi(name[len(netLabPrefix) : len(name)-len(digits)])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test still runs
		}
		exec.Command("ip", "netns", "del", name).Run()
		if strings.HasSuffix(name, "-hub") {
			exec.Command("ip", "link", "del", strings.TrimSuffix(name, "-hub")+"r").Run()
		}
	}
}

// TestJepsenNetLab: the suite's network namespaces on today's cluster.
// Three nodes, each in its own namespace (mutual TLS on the cluster
// listener, as beyond loopback it must be), under load on a topic of the
// two nodes other than the victim; the victim, cut off from its peers by
// blackhole routes, is fenced by the controller while the test still
// reaches it; healed, it is unfenced; the checker passes; and the
// namespaces are gone once the test ends.
func TestJepsenNetLab(t *testing.T) {
	var lab *netLab
	t.Run("cluster", func(t *testing.T) {
		c := newJepsenCluster(t, 3, netNamespaces)
		lab = c.lab
		c.startAll()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		ctrl := c.controller()
		victim := (ctrl + 1) % 3
		createAssignedTopic(t, ctx, c.kafkaAddrs(), "netlab", [][]int32{{int32(ctrl + 1)}, {int32((victim+1)%3 + 1)}}, nil)
		w := startWorkload(t, c.kafka, 500, 1, "netlab")
		w.awaitAcks(200, 30*time.Second)
		fenced := func(want bool) func() bool {
			return func() bool {
				v, ok := c.view(ctrl)
				for _, b := range v.Brokers {
					if ok && b.ID == int32(victim+1) {
						return b.Fenced == want
					}
				}
				return false
			}
		}
		lab.isolate(victim)
		c.waitFor("the isolated node fenced", fenced(true))
		if _, ok := c.view(victim); !ok {
			t.Fatal("the isolated node is out of the test's reach too")
		}
		w.awaitAcks(200, 30*time.Second)
		lab.heal()
		c.waitFor("the healed node unfenced", fenced(false))
		failOn(t, c.verify(ctx, w, "netlab"))
	})
	if lab == nil {
		return
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), lab.prefix) {
		t.Fatalf("namespaces left behind:\n%s", out)
	}
}
