package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"ferry/edge/adminapi"
	"ferry/edge/cluster"
)

// The cluster's operations: partition reassignment (a change of
// replication factor is one) and the voter set, through the admin API.

func clusterOpsCommands() []*command {
	return []*command{
		{
			name: "reassign",
			summary: "move a topic's partitions to other brokers, or change its replication factor; shows the plan unless --execute " +
				"(the new replicas catch up, then the move completes; --cancel restores the replicas before it)",
			example: "ferry cluster reassign --admin http://h1:8080 --topic orders --replication-factor 3            # the plan\n" +
				"  ferry cluster reassign --admin http://h1:8080 --topic orders --replication-factor 3 --execute  # do it, and wait\n" +
				"  ferry cluster reassign --admin http://h1:8080 --plan moves.json --execute   # kafka-reassign-partitions' JSON\n" +
				"  ferry cluster reassign --admin http://h1:8080 --topic orders --cancel --execute",
			flags: reassignFlags,
		},
		{
			name: "reassignments", summary: "the partitions under reassignment: target, adding, removing and in-sync replicas",
			example: "ferry cluster reassignments --admin http://h1:8080",
			flags: nodeView("", "/api/cluster/reassignments", func(out io.Writer, rs []cluster.Reassignment, _ *adminClient, _ []byte) error {
				return printReassignments(out, rs)
			}),
		},
		{
			name: "voters", summary: "the raft voters: id, address, live",
			example: "ferry cluster voters --admin http://h1:8080",
			flags: nodeView("", "/api/cluster/voters", func(out io.Writer, vs []cluster.VoterStatus, _ *adminClient, _ []byte) error {
				return printVoters(out, vs)
			}),
		},
		{
			name: "add-voter", summary: "make a node started with --cluster-join a voter of the cluster (see docs/cluster.md)",
			example: "ferry cluster add-voter --admin http://h1:8080 --id 4 --addr h4:9500",
			flags: func(fs *pflag.FlagSet) action {
				admin := adminFlags(fs)
				id := fs.Int32("id", -1, "the new voter's --cluster-node-id (required)")
				addr := fs.String("addr", "", "the new voter's cluster address, HOST:PORT as in --cluster-voters (required)")
				return func(args []string, out io.Writer) error {
					if err := exactArgs(args); err != nil {
						return err
					}
					if *id < 0 || *addr == "" {
						return usagef("give --id and --addr")
					}
					c, err := admin.client()
					if err != nil {
						return err
					}
					var vs []cluster.VoterStatus
					if _, err := c.call("POST", "/api/cluster/voters", adminapi.AddVoterRequest{ID: *id, Addr: *addr}, &vs); err != nil {
						return err
					}
					fmt.Fprintf(out, "voter %d at %s added\n", *id, *addr)
					return printVoters(out, vs)
				}
			},
		},
		{
			name: "remove-voter", summary: "take a voter out of the cluster; refused while it holds replicas (reassign them away first) or when no live majority would be left",
			example: "ferry cluster remove-voter --admin http://h1:8080 --id 4",
			flags: func(fs *pflag.FlagSet) action {
				admin := adminFlags(fs)
				id := fs.Int32("id", -1, "the voter's id (required)")
				return func(args []string, out io.Writer) error {
					if err := exactArgs(args); err != nil {
						return err
					}
					if *id < 0 {
						return usagef("give --id")
					}
					c, err := admin.client()
					if err != nil {
						return err
					}
					if _, err := c.call("DELETE", "/api/cluster/voters/"+strconv.Itoa(int(*id)), nil, nil); err != nil {
						return err
					}
					_, err = fmt.Fprintf(out, "voter %d removed: stop the node now\n", *id)
					return err
				}
			},
		},
	}
}

// reassignPlan is kafka-reassign-partitions' JSON plan.
type reassignPlan struct {
	Version    int                       `json:"version"`
	Partitions []cluster.PartitionTarget `json:"partitions"`
}

func reassignFlags(fs *pflag.FlagSet) action {
	admin := adminFlags(fs)
	topic := fs.String("topic", "", "the topic to reassign")
	rf := fs.Int32("replication-factor", 0, "give every partition of --topic this many replicas (the fewest moves: replicas are kept, the least loaded live brokers added)")
	planFile := fs.String("plan", "", "a kafka-reassign-partitions plan: {\"version\":1,\"partitions\":[{\"topic\":\"t\",\"partition\":0,\"replicas\":[1,2,3]}]}")
	cancel := fs.Bool("cancel", false, "cancel the reassignments under way (of --topic, or the partitions of --plan)")
	execute := fs.Bool("execute", false, "apply the plan (without it: show it, change nothing)")
	wait := fs.Duration("wait", 10*time.Minute, "with --execute, how long to wait for the moves to complete, showing progress (0: do not wait)")
	asJSON := fs.Bool("json", false, "print JSON")
	return func(args []string, out io.Writer) error {
		if err := exactArgs(args); err != nil {
			return err
		}
		req := adminapi.ReassignRequest{Topic: *topic, ReplicationFactor: *rf, Cancel: *cancel, DryRun: !*execute}
		if *planFile != "" {
			b, err := os.ReadFile(*planFile)
			if err != nil {
				return err
			}
			var p reassignPlan
			if err := json.Unmarshal(b, &p); err != nil {
				return fmt.Errorf("%s: %w", *planFile, err)
			}
			req.Partitions = p.Partitions
		}
		switch {
		case *planFile != "" && (*rf != 0 || *topic != ""):
			return usagef("--plan excludes --topic and --replication-factor")
		case *planFile == "" && *topic == "":
			return usagef("give --topic (with --replication-factor or --cancel) or --plan")
		case *planFile == "" && (*rf == 0) == !*cancel:
			return usagef("with --topic give one of --replication-factor and --cancel")
		}
		c, err := admin.client()
		if err != nil {
			return err
		}
		var res adminapi.ReassignResult
		body, err := c.call("POST", "/api/cluster/reassignments", req, &res)
		if err != nil {
			return err
		}
		if *asJSON {
			if err := writeRaw(out, body); err != nil {
				return err
			}
		} else if err := printReassignResult(out, res, *cancel); err != nil {
			return err
		}
		failed := 0
		for _, p := range res.Partitions {
			if p.Error != "" {
				failed++
			}
		}
		if failed > 0 {
			return fmt.Errorf("%d of %d partitions refused", failed, len(res.Partitions))
		}
		if res.DryRun || *cancel || *wait <= 0 || len(res.Partitions) == 0 {
			return nil
		}
		return waitReassigned(out, c, res.Partitions, *wait, *asJSON)
	}
}

func printReassignResult(out io.Writer, res adminapi.ReassignResult, cancel bool) error {
	if len(res.Partitions) == 0 {
		_, err := fmt.Fprintln(out, "nothing to do: every partition already has what was asked")
		return err
	}
	verb := "reassigning"
	switch {
	case res.DryRun && cancel:
		verb = "would cancel (dry run, nothing changed: --execute does it)"
	case res.DryRun:
		verb = "would reassign (dry run, nothing changed: --execute does it)"
	case cancel:
		verb = "cancelled"
	}
	fmt.Fprintln(out, verb)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCURRENT\tTARGET\tERROR")
	for _, p := range res.Partitions {
		e := p.Error
		if e == "" {
			e = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", p.Topic, p.Partition, idList(p.Current), idList(p.Target), e)
	}
	return tw.Flush()
}

// waitReassigned polls the reassignments until none of parts is under
// way, printing progress each time it changes.
func waitReassigned(out io.Writer, c *adminClient, parts []adminapi.ReassignPartitionView, wait time.Duration, quiet bool) error {
	deadline := time.Now().Add(wait)
	last := ""
	for {
		var rs []cluster.Reassignment
		if _, err := c.get("/api/cluster/reassignments", &rs); err != nil {
			return err
		}
		var pending []string
		for _, r := range rs {
			if slices.ContainsFunc(parts, func(p adminapi.ReassignPartitionView) bool { return p.Topic == r.Topic && p.Partition == r.Partition }) {
				pending = append(pending, fmt.Sprintf("%s-%d (adding %s, in sync %s)", r.Topic, r.Partition, idList(r.Adding), idList(r.ISR)))
			}
		}
		if len(pending) == 0 {
			if !quiet {
				fmt.Fprintf(out, "done: %d partitions reassigned\n", len(parts))
			}
			return nil
		}
		if line := strings.Join(pending, ", "); line != last && !quiet {
			fmt.Fprintf(out, "%d of %d done; catching up: %s\n", len(parts)-len(pending), len(parts), line)
			last = line
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d partitions still under reassignment after %s: it goes on (ferry cluster reassignments shows it; --cancel stops it)", len(pending), wait)
		}
		time.Sleep(time.Second)
	}
}

func printReassignments(out io.Writer, rs []cluster.Reassignment) error {
	if len(rs) == 0 {
		_, err := fmt.Fprintln(out, "no reassignment under way")
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tREPLICAS\tADDING\tREMOVING\tISR")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", r.Topic, r.Partition, idList(r.Replicas), idList(r.Adding), idList(r.Removing), idList(r.ISR))
	}
	return tw.Flush()
}

func printVoters(out io.Writer, vs []cluster.VoterStatus) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VOTER\tADDRESS\tSTATE")
	for _, v := range vs {
		state := "live"
		switch {
		case !v.Voter:
			state = "joining (not voting yet)"
		case !v.Live:
			state = "DOWN"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\n", v.ID, v.Addr, state)
	}
	return tw.Flush()
}

// idList is ids comma-separated, "-" for none.
func idList(ids []int32) string {
	if len(ids) == 0 {
		return "-"
	}
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(int(id))
	}
	return strings.Join(s, ",")
}
