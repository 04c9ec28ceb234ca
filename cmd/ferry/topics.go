package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"ferry/edge"
	"ferry/edge/adminapi"
	flog "ferry/log"
)

// The topic commands work on a running node through its admin API, or,
// with --data-dir, on a stopped node's data directory; both print the same
// tables and the same JSON (adminapi.TopicView).

func topicsCommand() *command {
	return &command{
		name:    "topics",
		summary: "create, list, describe, alter and delete topics, on a running node (--admin) or a stopped one's data (--data-dir)",
		example: "ferry topics create telemetry --partitions 4 --config retention.ms=86400000 --admin http://localhost:8080\n" +
			"  ferry topics list --data-dir ./data",
		subs: []*command{
			{
				name: "create", args: "NAME", summary: "create a topic",
				example: "ferry topics create telemetry --partitions 4 --config flush.policy=always --admin http://localhost:8080\n" +
					"ferry topics create telemetry --partitions 4 --data-dir ./data    # the node stopped",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					parts := fs.Int32("partitions", 1, "number of partitions (on a running node, default: its --default-partitions)")
					configs := fs.StringArray("config", nil, "topic config key=value (repeatable); see 'ferry topics describe'")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						cfg, err := parseConfigs(*configs)
						if err != nil {
							return err
						}
						var v adminapi.TopicView
						err = where.run(func(l *flog.Log) error {
							if _, err := l.CreateTopic(args[0], *parts, cfg); err != nil {
								return err
							}
							v, err = adminapi.DescribeTopic(l, args[0])
							return err
						}, func(c *adminClient) error {
							req := adminapi.CreateTopicRequest{Name: args[0], Configs: cfg}
							if fs.Changed("partitions") {
								req.Partitions = *parts
							}
							_, err := c.call("POST", "/api/topics", req, &v)
							return err
						})
						if err != nil {
							return err
						}
						_, err = fmt.Fprintf(out, "created topic %s with %d partition(s)\n", v.Name, len(v.Partitions))
						return err
					}
				},
			},
			{
				name: "list", summary: "list topics with their partitions, records and bytes",
				example: "ferry topics list --admin http://localhost:8080\n  ferry topics list --data-dir ./data --json",
				flags: dataView(localOrAdmin.run, "", "/api/topics",
					func(l *flog.Log, _ string) ([]adminapi.TopicView, error) { return adminapi.TopicViews(l), nil }, printTopics),
			},
			{
				name: "describe", args: "NAME", summary: "show a topic's partitions, offsets, sizes and configs",
				example: "ferry topics describe telemetry --admin http://localhost:8080\n  ferry topics describe telemetry --data-dir ./data --json",
				flags:   dataView(localOrAdmin.run, "NAME", "/api/topics", adminapi.DescribeTopic, printDescription),
			},
			{
				name: "alter", args: "NAME", summary: "change a topic's configs (live on a running node) or grow its partitions",
				example: "ferry topics alter telemetry --set retention.ms=86400000 --delete flush.policy --admin http://localhost:8080\n" +
					"ferry topics alter telemetry --partitions 8 --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					set := fs.StringArray("set", nil, "set a config key=value (repeatable)")
					del := fs.StringArray("delete", nil, "return a config key to its default (repeatable)")
					parts := fs.Int32("partitions", 0, "grow the topic to this many partitions (keyed records may then land on another partition than before)")
					asJSON := fs.Bool("json", false, "print the topic afterwards as JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						cfg, err := parseConfigs(*set)
						if err != nil {
							return err
						}
						if len(cfg) == 0 && len(*del) == 0 && *parts == 0 {
							return usagef("nothing to change: give --set, --delete or --partitions")
						}
						name := args[0]
						var v adminapi.TopicView
						var raw []byte
						err = where.run(func(l *flog.Log) error {
							if len(cfg) > 0 || len(*del) > 0 {
								if err := l.AlterConfigs(name, cfg, *del); err != nil {
									return err
								}
							}
							if *parts > 0 {
								if err := l.AddPartitions(name, *parts); err != nil {
									return err
								}
							}
							v, err = adminapi.DescribeTopic(l, name)
							return err
						}, func(c *adminClient) (err error) {
							if len(cfg) > 0 || len(*del) > 0 {
								if raw, err = c.call("PATCH", "/api/topics/"+pathEscape(name)+"/configs", adminapi.AlterConfigsRequest{Set: cfg, Delete: *del}, &v); err != nil {
									return err
								}
							}
							if *parts > 0 {
								raw, err = c.call("POST", "/api/topics/"+pathEscape(name)+"/partitions", adminapi.AddPartitionsRequest{Partitions: *parts}, &v)
							}
							return err
						})
						if err != nil {
							return err
						}
						if *asJSON {
							return printJSON(out, raw, v)
						}
						_, err = fmt.Fprintf(out, "altered topic %s: %d partition(s), configs %s\n", v.Name, len(v.Partitions), formatConfigs(v.Configs))
						return err
					}
				},
			},
			{
				name: "delete", args: "NAME", summary: "delete a topic and all its data",
				example: "ferry topics delete telemetry --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					return changeAction("NAME", "deleted topic %s", func(name string) error {
						return where.run(func(l *flog.Log) error { return l.DeleteTopic(name) },
							send("DELETE", "/api/topics/"+pathEscape(name), nil))
					})
				},
			},
		},
	}
}

// run calls local with the data directory's log (--data-dir), or remote
// with the admin API's client.
func (t localOrAdmin) run(local func(*flog.Log) error, remote func(*adminClient) error) error {
	return t.choose(func(dir string) error { return withLog(dir, local) }, remote)
}

// printJSON prints what --json shows: the admin API's answer as it came,
// or the same view made from a data directory.
func printJSON(out io.Writer, raw []byte, v any) error {
	if raw != nil {
		return writeRaw(out, raw)
	}
	return json.NewEncoder(out).Encode(v)
}

// withLog opens the log of a data directory for an offline command.
func withLog(dataDir string, fn func(*flog.Log) error) error {
	if err := edge.CheckDataFormat(dataDir, false); err != nil {
		return err
	}
	l, err := flog.Open(flog.Options{
		Dir: edge.LogDir(dataDir), LockTimeout: 300 * time.Millisecond, RetentionCheckInterval: -1,
		Logger: slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, flog.ErrDataDirLocked) {
		return fmt.Errorf("%s is in use by a running ferry: stop it first, or manage the running node through its admin API (--admin URL instead of --data-dir)", dataDir)
	}
	if err != nil {
		return err
	}
	err = fn(l)
	if cerr := l.Close(); err == nil {
		err = cerr
	}
	return err
}

func parseConfigs(kvs []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("%q: want key=value", kv)
		}
		m[k] = v
	}
	return m, flog.ValidateConfigs(m)
}

func formatConfigs(m map[string]string) string {
	if len(m) == 0 {
		return "(all defaults)"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, " ")
}

func printTopics(out io.Writer, views []adminapi.TopicView) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRECORDS\tBYTES")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", v.Name, len(v.Partitions), v.Records, v.SizeBytes)
	}
	return tw.Flush()
}

func printDescription(out io.Writer, v adminapi.TopicView) error {
	fmt.Fprintf(out, "Topic: %s  id: %s  partitions: %d  records: %d  bytes: %d\n\n", v.Name, v.ID, len(v.Partitions), v.Records, v.SizeBytes)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTART\tEND\tDURABLE\tBYTES\tSEGMENTS")
	for _, p := range v.Partitions {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", p.Partition, p.StartOffset, p.EndOffset, p.DurableOffset, p.SizeBytes, p.Segments)
	}
	for _, p := range v.Partitions {
		if d := p.Damaged; d != nil {
			fmt.Fprintf(tw, "\nDAMAGED: partition %d at offset %d (%s, position %d): %s; see ferry log truncate\n", p.Partition, d.Offset, d.Segment, d.Position, d.Reason)
		}
	}
	fmt.Fprintln(tw, "\nCONFIG\tVALUE\tSOURCE")
	keys := make([]string, 0, len(v.EffectiveConfigs))
	for k := range v.EffectiveConfigs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		src := "topic"
		if v.EffectiveConfigs[k].Default {
			src = "default"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k, v.EffectiveConfigs[k].Value, src)
	}
	return tw.Flush()
}
