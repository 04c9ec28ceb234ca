package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"ferry/edge/adminapi"
	"ferry/edge/cluster"
)

func clusterCommand() *command {
	return &command{
		name:    "cluster",
		summary: "the cluster of a running full node: its controller, raft state and brokers; reassignments and voters",
		subs: append([]*command{{
			name:    "status",
			summary: "nodes, controller, raft term and index, partitions per broker, fenced brokers, and each partition's replicas, ISR, ELR, leader and epochs",
			example: "ferry cluster status --admin http://localhost:18080\n  ferry cluster status --admin http://localhost:18080 --all-partitions\n  ferry cluster status --admin http://localhost:18080 --json",
			flags: func(fs *pflag.FlagSet) action {
				all := fs.Bool("all-partitions", false, "list every partition, not only those under-replicated, under min ISR or offline (--json always has every one)")
				return nodeView("", "/api/cluster", func(out io.Writer, v adminapi.ClusterView, _ *adminClient, _ []byte) error {
					return printClusterStatus(out, v, *all)
				})(fs)
			},
		}}, clusterOpsCommands()...),
	}
}

func printClusterStatus(out io.Writer, v adminapi.ClusterView, allPartitions bool) error {
	ctrl := "none known"
	if v.Controller >= 0 {
		ctrl = fmt.Sprintf("node %d", v.Controller)
	}
	fmt.Fprintf(out, "node %d (%s), controller %s, raft term %d, last index %d, committed %d, applied %d\n",
		v.Node, v.State, ctrl, v.Term, v.LastIndex, v.CommitIndex, v.AppliedIndex)
	fmt.Fprintf(out, "%d topics, %d partitions, %d offline, %d under-replicated, %d under min ISR\n",
		v.Topics, v.Partitions, len(v.Offline), v.Replication.UnderReplicated, v.Replication.UnderMinISR)
	if d := v.Defaults; d.ReplicationFactor > 0 {
		fmt.Fprintf(out, "defaults: replication factor %d, min.insync.replicas %d\n", d.ReplicationFactor, max(d.MinInsyncReplicas, 1))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BROKER\tSTATE\tKAFKA\tREPLICAS\tLEADS\tRACK")
	for _, b := range v.Brokers {
		state := "live"
		if b.Fenced {
			state = "FENCED"
		}
		rack := b.Rack
		if rack == "" {
			rack = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\n", b.ID, state, b.Endpoints["kafka"], b.Replicas, b.Leads, rack)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(v.Offline) > 0 {
		fmt.Fprintf(out, "offline (no in-sync or eligible replica live): %s\n", strings.Join(v.Offline, ", "))
	}
	return printPartitionStates(out, v.PartitionStates, allPartitions)
}

// printPartitionStates lists the partitions (all, or only the unhealthy
// ones) as kafka-topics --describe does, with KIP-966's ELR and the
// epochs.
func printPartitionStates(out io.Writer, parts []cluster.PartitionStatus, all bool) error {
	var rows []cluster.PartitionStatus
	for _, p := range parts {
		if all || p.UnderReplicated || p.UnderMinISR || p.Leader == cluster.NoLeader {
			rows = append(rows, p)
		}
	}
	if len(rows) == 0 {
		if len(parts) > 0 {
			fmt.Fprintln(out, "every partition fully in sync (--all-partitions lists them)")
		}
		return nil
	}
	ids := func(s []int32) string {
		if len(s) == 0 {
			return "-"
		}
		var b strings.Builder
		for i, id := range s {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(int(id)))
		}
		return b.String()
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tLEADER\tLEADER-EPOCH\tPARTITION-EPOCH\tREPLICAS\tISR\tELR\tMIN-ISR\tSTATE")
	for _, p := range rows {
		leader, state := strconv.Itoa(int(p.Leader)), "ok"
		switch {
		case p.Leader == cluster.NoLeader:
			leader, state = "none", "OFFLINE"
		case p.UnderMinISR:
			state = "UNDER-MIN-ISR"
		case p.UnderReplicated:
			state = "under-replicated"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%s\n", p.Topic, p.Partition, leader, p.LeaderEpoch, p.PartitionEpoch,
			ids(p.Replicas), ids(p.ISR), ids(p.ELR), p.MinISR, state)
	}
	return tw.Flush()
}
