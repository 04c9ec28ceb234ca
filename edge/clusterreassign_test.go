package edge

import (
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/edge/cluster"
)

// A reassignment over the Kafka API in a cluster of three: started from
// any node, listed while the new replicas are out of sync, completed when
// the leader's AlterPartition (the data path's, driven here by hand) puts
// the whole target in the ISR; a cancel restores the original replicas.
func TestClusterPartitionReassignmentOverKafka(t *testing.T) {
	tc := startTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[2].KafkaAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := adm.CreateTopic(ctx, 2, 1, nil, "moving"); err != nil {
		t.Fatal(err)
	}
	// Created through the controller; every node follows.
	tc.waitFor("the topic on every node", func() bool {
		for _, n := range tc.nodes {
			if n.Cluster().Image().Topics["moving"] == nil {
				return false
			}
		}
		return true
	})
	part := func(i int32) cluster.PartitionState {
		return tc.nodes[2].Cluster().Image().Topics["moving"].Partitions[i]
	}
	orig := part(0).Replicas
	var others []int32
	for id := int32(1); id <= 3; id++ {
		if id != orig[0] {
			others = append(others, id)
		}
	}
	target := append(orig[:1:1], others...) // replication factor 1 → 3

	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("moving", 0, target)
	req.Assign("moving", 1, []int32{1, 9})
	req.CancelAssign("nothing", 0)
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := resp["moving"][0].Err; err != nil {
		t.Fatalf("moving-0 to %v: %v %s", target, err, resp["moving"][0].ErrMessage)
	}
	if err := resp["moving"][1].Err; !errors.Is(err, kerr.InvalidReplicaAssignment) {
		t.Fatalf("to an unknown broker: %v", err)
	}
	if err := resp["nothing"][0].Err; !errors.Is(err, kerr.UnknownTopicOrPartition) {
		t.Fatalf("an unknown topic: %v", err)
	}

	// Listed, from another node, while the added replicas catch up.
	listed := func() kadm.ListPartitionReassignmentsResponses {
		t.Helper()
		other, err := kgo.NewClient(kgo.SeedBrokers(tc.nodes[0].KafkaAddr()))
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		l, err := kadm.NewClient(other).ListPartitionReassignments(ctx, kadm.TopicsSet{"moving": {0: {}, 1: {}}})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	// Applied on the controller, which kadm sends admin requests to; every
	// node follows.
	everywhere := func(what string, cond func(p cluster.PartitionState) bool, i int32) {
		t.Helper()
		tc.waitFor(what, func() bool {
			for _, n := range tc.nodes {
				if !cond(n.Cluster().Image().Topics["moving"].Partitions[i]) {
					return false
				}
			}
			return true
		})
	}
	everywhere("the reassignment on every node", cluster.PartitionState.Reassigning, 0)
	l := listed()
	got, ok := l["moving"][0]
	if !ok || len(l["moving"]) != 1 || !slices.Equal(got.Replicas, target) || !slices.Equal(got.AddingReplicas, others) || len(got.RemovingReplicas) != 0 {
		t.Fatalf("listed %+v, want moving-0 to %v adding %v", l, target, others)
	}

	// The new replicas catch up and the leader takes them into the ISR
	// (edge/replica): the move completes by itself. (That it waits for
	// every target replica is the FSM's rule: TestReassignment*.)
	everywhere("the reassignment completed", func(p cluster.PartitionState) bool {
		return !p.Reassigning() && slices.Equal(p.Replicas, target) && len(p.ISR) == len(target)
	}, 0)
	if l := listed(); len(l) != 0 {
		t.Fatalf("still listed: %+v", l)
	}
	md, err := adm.Metadata(ctx, "moving")
	if err != nil || !slices.Equal(md.Topics["moving"].Partitions[0].Replicas, target) {
		t.Fatalf("metadata after the move: %+v %v", md.Topics["moving"].Partitions[0], err)
	}

	// moving-1 grows to three, then the move is cancelled.
	orig1 := part(1).Replicas
	grow := append(slices.Clone(orig1), minusIDs([]int32{1, 2, 3}, orig1)...)
	var req2 kadm.AlterPartitionAssignmentsReq
	req2.Assign("moving", 1, grow)
	if resp, err := adm.AlterPartitionAssignments(ctx, req2); err != nil || resp["moving"][1].Err != nil {
		t.Fatalf("growing moving-1: %v %+v", err, resp)
	}
	var req3 kadm.AlterPartitionAssignmentsReq
	req3.CancelAssign("moving", 1)
	if resp, err := adm.AlterPartitionAssignments(ctx, req3); err != nil || resp["moving"][1].Err != nil {
		t.Fatalf("cancelling moving-1: %v %+v", err, resp)
	}
	everywhere("the original replicas back", func(p cluster.PartitionState) bool {
		return !p.Reassigning() && slices.Equal(p.Replicas, orig1)
	}, 1)
	if resp, err := adm.AlterPartitionAssignments(ctx, req3); err != nil || !errors.Is(resp["moving"][1].Err, kerr.NoReassignmentInProgress) {
		t.Fatalf("cancelling nothing: %v %+v", err, resp)
	}
}

func minusIDs(a, b []int32) []int32 {
	var out []int32
	for _, id := range a {
		if !slices.Contains(b, id) {
			out = append(out, id)
		}
	}
	return out
}

// A fourth node started with --cluster-join becomes a voter and a broker
// through the admin API of another node, and is removed again.
func TestClusterAddAndRemoveVoterOverAdminAPI(t *testing.T) {
	tc := startTestCluster(t)
	o := tc.opts[0]
	co := *o.Cluster
	addr := freeLoopbackAddrs(t, 1)[0]
	co.NodeID, co.Join = 4, true
	co.Voters = append(slices.Clone(co.Voters), cluster.Voter{ID: 4, Addr: addr})
	o.Cluster, o.DataDir, o.MirrorAddr = &co, t.TempDir(), ""
	n4, err := Start(o)
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Close()

	call := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, "http://"+tc.nodes[1].AdminAddr()+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	// A voter nothing answers for (node 5 was never started), or whose
	// address answers as another node, is refused: the voters stay.
	dead := freeLoopbackAddrs(t, 1)[0]
	_, votersBefore := call("GET", "/api/cluster/voters", "")
	if code, body := call("POST", "/api/cluster/voters", `{"id":5,"addr":"`+dead+`"}`); code != http.StatusConflict || !strings.Contains(body, "no node answers") {
		t.Fatalf("add-voter of a dead address: %d %s", code, body)
	}
	if code, body := call("POST", "/api/cluster/voters", `{"id":5,"addr":"`+addr+`"}`); code != http.StatusConflict || !strings.Contains(body, "is node 4, not 5") {
		t.Fatalf("add-voter 5 at node 4's address: %d %s", code, body)
	}
	if _, after := call("GET", "/api/cluster/voters", ""); after != votersBefore {
		t.Fatalf("voters %s after refused adds, were %s", after, votersBefore)
	}
	if code, body := call("POST", "/api/cluster/voters", `{"id":4,"addr":"`+addr+`"}`); code != http.StatusOK || !strings.Contains(body, addr) {
		t.Fatalf("add-voter: %d %s", code, body)
	}
	tc.waitFor("broker 4 registered and live", func() bool {
		b := tc.nodes[0].Cluster().Image().Brokers[4]
		return b != nil && !b.Fenced && n4.Cluster().Image().Brokers[1] != nil
	})
	// Broker 4 holds a replica: not removed until it is moved away.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := n4.Cluster().Propose(ctx, cluster.Record{Op: cluster.OpCreateTopic, Topic: "on4", Assignment: [][]int32{{4}}}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	if code, body := call("DELETE", "/api/cluster/voters/4", ""); code != http.StatusConflict || !strings.Contains(body, "on4-0") || !strings.Contains(body, "reassign") {
		t.Fatalf("remove-voter 4 holding on4-0: %d %s", code, body)
	}
	if code, body := call("POST", "/api/cluster/reassignments", `{"partitions":[{"topic":"on4","partition":0,"replicas":[1]}]}`); code != http.StatusOK || strings.Contains(body, "error") {
		t.Fatalf("reassign on4-0: %d %s", code, body)
	}
	tc.waitFor("the move on node 4", func() bool { return n4.Cluster().Image().Topics["on4"].Partitions[0].Reassigning() })
	// Node 1 catches up; its leader takes it into the ISR, which
	// completes the move and hands node 1 the leadership.
	tc.waitFor("on4-0 moved to node 1", func() bool {
		p := n4.Cluster().Image().Topics["on4"].Partitions[0]
		return !p.Reassigning() && p.Leader == 1 && slices.Equal(p.Replicas, []int32{1})
	})
	if code, body := call("DELETE", "/api/cluster/voters/4", ""); code != http.StatusNoContent {
		t.Fatalf("remove-voter 4: %d %s", code, body)
	}
	// Committed by the controller; every voter's configuration follows.
	tc.waitFor("voters 1, 2, 3 on every node", func() bool {
		for _, n := range tc.nodes {
			vs, err := n.Cluster().Voters()
			if err != nil || len(vs) != 3 || slices.ContainsFunc(vs, func(v cluster.VoterStatus) bool { return v.ID == 4 }) {
				return false
			}
		}
		return true
	})
}
