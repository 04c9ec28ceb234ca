package main

import (
	"context"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"ferry/edge"
	"ferry/edge/adminapi"
	"ferry/edge/cluster"
)

// TestClusterStatus runs ferry cluster status against a node that is a
// cluster of one voter (raft elects it at once) and against a node alone.
func TestClusterStatus(t *testing.T) {
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
	deadline := time.Now().Add(20 * time.Second)
	var v adminapi.ClusterView
	for {
		v = ferryJSON[adminapi.ClusterView](t, "cluster", "status", "--admin", admin, "--json")
		if v.Controller == 1 && len(v.Brokers) == 1 && v.Defaults.ReplicationFactor == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no controller and broker in %+v", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if v.State != "Leader" || v.AppliedIndex == 0 || v.Brokers[0].Endpoints["kafka"] != n.KafkaAddr() {
		t.Fatalf("status %+v", v)
	}
	runCLICases(t, []cliCase{
		{[]string{"cluster", "status", "--admin", admin}, 0, "controller node 1"},
		{[]string{"cluster", "status", "--admin", admin}, 0, "0 offline, 0 under-replicated, 0 under min ISR"},
	})
	// A partition: its replicas, ISR and epochs in --json, and in the
	// text listing with --all-partitions (a healthy one is not listed
	// without).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := n.Cluster().Propose(ctx, cluster.Record{Op: cluster.OpCreateTopic, Topic: "replicated", Count: 1}); err != nil || res.Err != nil {
		t.Fatal(err, res.Err)
	}
	v = ferryJSON[adminapi.ClusterView](t, "cluster", "status", "--admin", admin, "--json")
	v.PartitionStates = slices.DeleteFunc(v.PartitionStates, func(p cluster.PartitionStatus) bool {
		return p.Topic == "__consumer_offsets" // the group coordinators' own topic
	})
	if len(v.PartitionStates) != 1 {
		t.Fatalf("partition states %+v", v.PartitionStates)
	}
	if p := v.PartitionStates[0]; p.Topic != "replicated" || p.Leader != 1 || len(p.ISR) != 1 || p.ISR[0] != 1 || p.MinISR != 1 || p.UnderReplicated {
		t.Fatalf("partition state %+v", p)
	}
	if v.Defaults.ReplicationFactor != 1 || v.Defaults.MinInsyncReplicas != 1 {
		t.Fatalf("defaults of a one-voter cluster: %+v", v.Defaults)
	}
	runCLICases(t, []cliCase{
		{[]string{"cluster", "status", "--admin", admin}, 0, "every partition fully in sync"},
		{[]string{"cluster", "status", "--admin", admin, "--all-partitions"}, 0, "replicated          0          1"}, // beside __consumer_offsets
	})
	_, alone := startNode(t, "")
	runCLICases(t, []cliCase{{[]string{"cluster", "status", "--admin", alone}, 1, "not in a cluster"}})
}
