package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"ferry/edge/adminapi"
)

func groupsCommand() *command {
	return &command{
		name:    "groups",
		summary: "consumer groups of a running node: members, assignments, lag; reset and delete offsets",
		example: "ferry groups list --admin http://localhost:8080\n  ferry groups describe billing\n  ferry groups reset-offsets billing --topic orders --to earliest",
		subs: []*command{
			{
				name: "list", summary: "list groups with their state, members and lag",
				example: "ferry groups list --admin http://localhost:8080 --json",
				flags: nodeView("", "/api/groups", func(out io.Writer, gs []adminapi.GroupSummary, _ *adminClient, _ []byte) error {
					tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
					fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tLAG")
					for _, g := range gs {
						fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", g.Group, g.State, g.Members, g.Lag)
					}
					return tw.Flush()
				}),
			},
			{
				name: "describe", args: "GROUP", summary: "show a group's members, their assignments, and per partition the committed offset, end and lag",
				example: "ferry groups describe billing --admin http://localhost:8080",
				flags: nodeView("GROUP", "/api/groups", func(out io.Writer, g adminapi.GroupView, _ *adminClient, _ []byte) error {
					return printGroup(out, g)
				}),
			},
			{
				name: "reset-offsets", args: "GROUP", summary: "set a group's committed offsets for a topic (its consumers stopped); shows what it would do unless --execute",
				example: "ferry groups reset-offsets billing --topic orders --to earliest             # what it would commit\n" +
					"ferry groups reset-offsets billing --topic orders --to earliest --execute   # commit it\n" +
					"ferry groups reset-offsets billing --topic orders --to 2025-06-01T08:00:00Z --execute\n" +
					"ferry groups reset-offsets billing --topic orders --partition 0 --to offset:1200 --execute",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					admin := adminFlags(fs)
					topic := fs.String("topic", "", "the topic whose offsets to reset (required)")
					to := fs.String("to", "", "earliest, latest, offset:N, timestamp:MS (milliseconds since the epoch) or an RFC 3339 time (required)")
					parts := fs.Int32Slice("partition", nil, "only these partitions (repeatable; default: all)")
					// A dry run unless --execute, as Kafka's kafka-consumer-groups
					// --reset-offsets is: a reset cannot be undone.
					execute := fs.Bool("execute", false, "commit the new offsets (without it: show what would be committed, commit nothing)")
					dryRun := fs.Bool("dry-run", false, "show what would be committed, commit nothing (the default; kept for scripts)")
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "GROUP"); err != nil {
							return err
						}
						if *topic == "" || *to == "" {
							return usagef("give --topic and --to")
						}
						if *execute && *dryRun {
							return usagef("--execute and --dry-run exclude each other")
						}
						dry := !*execute
						target := *to
						if t, err := time.Parse(time.RFC3339, target); err == nil {
							target = "timestamp:" + strconv.FormatInt(t.UnixMilli(), 10)
						}
						c, err := admin.client()
						if err != nil {
							return err
						}
						var res adminapi.ResetOffsetsResult
						body, err := c.call("POST", "/api/groups/"+pathEscape(args[0])+"/reset-offsets",
							adminapi.ResetOffsetsRequest{Topic: *topic, To: target, Partitions: *parts, DryRun: dry}, &res)
						if err != nil {
							return err
						}
						if *asJSON {
							return writeRaw(out, body)
						}
						verb := "reset"
						if res.DryRun {
							verb = "would reset (dry run, nothing committed: --execute commits it)"
						}
						fmt.Fprintf(out, "group %s, topic %s: %s\n", res.Group, res.Topic, verb)
						tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
						fmt.Fprintln(tw, "PARTITION\tPREVIOUS\tNEW")
						for _, p := range res.Partitions {
							fmt.Fprintf(tw, "%d\t%s\t%d\n", p.Partition, optOffset(p.Previous), p.Offset)
						}
						return tw.Flush()
					}
				},
			},
			{
				name: "delete", args: "GROUP", summary: "delete a group's committed offsets (its consumers stopped)",
				example: "ferry groups delete billing --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					admin := adminFlags(fs)
					return changeAction("GROUP", "deleted group %s", func(group string) error {
						c, err := admin.client()
						if err != nil {
							return err
						}
						_, err = c.do("DELETE", "/api/groups/"+pathEscape(group), nil)
						return err
					})
				},
			},
		},
	}
}

func optOffset(o *int64) string {
	if o == nil {
		return "-"
	}
	return strconv.FormatInt(*o, 10)
}

func printGroup(out io.Writer, g adminapi.GroupView) error {
	proto := g.ProtocolType
	if g.Protocol != "" {
		proto += "/" + g.Protocol
	}
	if proto == "" {
		proto = "-"
	}
	fmt.Fprintf(out, "Group: %s  state: %s  protocol: %s  generation: %d  members: %d  lag: %d\n\n", g.Group, g.State, proto, g.Generation, len(g.Members), g.Lag)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tMEMBER")
	for _, o := range g.Offsets {
		member := o.Member
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\t%s\n", o.Topic, o.Partition, optOffset(o.CommittedOffset), o.EndOffset, optOffset(o.Lag), member)
	}
	if len(g.Members) > 0 {
		fmt.Fprintln(tw, "\nMEMBER\tCLIENT ID\tHOST\tASSIGNMENT")
		for _, m := range g.Members {
			topics := make([]string, 0, len(m.Assignment))
			for t := range m.Assignment {
				topics = append(topics, t)
			}
			sort.Strings(topics)
			var as []string
			for _, t := range topics {
				ps := make([]string, len(m.Assignment[t]))
				for i, p := range m.Assignment[t] {
					ps[i] = strconv.Itoa(int(p))
				}
				as = append(as, t+":"+strings.Join(ps, ","))
			}
			assignment := strings.Join(as, " ")
			if assignment == "" {
				assignment = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.ID, m.ClientID, m.Host, assignment)
		}
	}
	return tw.Flush()
}
