package main

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ferry/edge"
	"ferry/edge/adminapi"
	"ferry/edge/cluster"
)

// TestClusterReassignAndVotersCLI runs the reassignment and voter
// commands against a cluster of one voter: the plan shown without
// --execute, a move to the replica it has completing at once, what one
// broker cannot do refused with the reason, the last voter kept.
func TestClusterReassignAndVotersCLI(t *testing.T) {
	t.Setenv("FERRY_ADMIN", "")
	t.Setenv("FERRY_ADMIN_TOKEN", "")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	n, err := edge.Start(edge.Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", Mode: "full",
		Logger:  slog.New(slog.DiscardHandler),
		Cluster: &edge.ClusterOptions{NodeID: 1, Voters: []cluster.Voter{{ID: 1, Addr: addr}}, HeartbeatInterval: 20 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	admin := "http://" + n.AdminAddr()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		if res, err := n.Cluster().Propose(ctx, cluster.Record{Op: cluster.OpCreateTopic, Topic: "orders", Count: 2, ReplicationFactor: 1}); err == nil && res.Err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatal(err, res.Err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	plan := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(plan, []byte(`{"version":1,"partitions":[{"topic":"orders","partition":1,"replicas":[1]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"version":1,"partitions":[{"topic":"orders","partition":0,"replicas":[1,7]}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	runCLICases(t, []cliCase{
		{[]string{"cluster", "reassign", "--admin", admin, "--topic", "orders", "--replication-factor", "2"}, 1, "not enough live brokers"},
		{[]string{"cluster", "reassign", "--admin", admin, "--plan", plan}, 0, "would reassign (dry run"},
		{[]string{"cluster", "reassign", "--admin", admin, "--plan", plan, "--execute"}, 0, "done: 1 partitions reassigned"},
		{[]string{"cluster", "reassign", "--admin", admin, "--plan", bad, "--execute"}, 1, "broker 7 is not registered"},
		{[]string{"cluster", "reassign", "--admin", admin, "--topic", "orders", "--cancel", "--execute"}, 0, "nothing to do"},
		{[]string{"cluster", "reassign", "--admin", admin, "--topic", "orders"}, 2, "one of --replication-factor and --cancel"},
		{[]string{"cluster", "reassignments", "--admin", admin}, 0, "no reassignment under way"},
		{[]string{"cluster", "voters", "--admin", admin}, 0, addr + "  live"},
		{[]string{"cluster", "remove-voter", "--admin", admin, "--id", "1"}, 1, "the last voter"},
	})
	res := ferryJSON[adminapi.ReassignResult](t, "cluster", "reassign", "--admin", admin, "--topic", "orders", "--replication-factor", "1", "--json")
	if !res.DryRun || len(res.Partitions) != 0 {
		t.Fatalf("replication factor 1 of a topic at 1: %+v", res)
	}
}
