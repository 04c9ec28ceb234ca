package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"ferry/edge/adminapi"
)

func clusterCommand() *command {
	return &command{
		name:    "cluster",
		summary: "the cluster of a running full node: its controller, raft state and brokers",
		subs: []*command{{
			name:    "status",
			summary: "nodes, controller, raft term and index, partitions per broker, fenced brokers and offline partitions",
			example: "ferry cluster status --admin http://localhost:18080\n  ferry cluster status --admin http://localhost:18080 --json",
			flags: nodeView("", "/api/cluster", func(out io.Writer, v adminapi.ClusterView, _ *adminClient, _ []byte) error {
				return printClusterStatus(out, v)
			}),
		}},
	}
}

func printClusterStatus(out io.Writer, v adminapi.ClusterView) error {
	ctrl := "none known"
	if v.Controller >= 0 {
		ctrl = fmt.Sprintf("node %d", v.Controller)
	}
	fmt.Fprintf(out, "node %d (%s), controller %s, raft term %d, last index %d, committed %d, applied %d\n",
		v.Node, v.State, ctrl, v.Term, v.LastIndex, v.CommitIndex, v.AppliedIndex)
	fmt.Fprintf(out, "%d topics, %d partitions, %d offline\n", v.Topics, v.Partitions, len(v.Offline))
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
		fmt.Fprintf(out, "offline (no live replica): %s\n", strings.Join(v.Offline, ", "))
	}
	return nil
}
