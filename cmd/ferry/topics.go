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
	flog "ferry/log"
)

func topicsCommand() *command {
	return &command{
		name:    "topics",
		summary: "create, list, describe and delete topics in a data directory (broker stopped)",
		example: "ferry topics create telemetry --partitions 4 --config retention.ms=86400000 --data-dir ./data",
		subs: []*command{
			{
				name: "create", args: "NAME", summary: "create a topic",
				example: "ferry topics create telemetry --partitions 4 --config flush.policy=always --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					parts := fs.Int32("partitions", 1, "number of partitions")
					configs := fs.StringArray("config", nil, "topic config key=value (repeatable); see 'ferry topics describe'")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						cfg, err := parseConfigs(*configs)
						if err != nil {
							return err
						}
						return withLog(*dataDir, func(l *flog.Log) error {
							info, err := l.CreateTopic(args[0], *parts, cfg)
							if err != nil {
								return err
							}
							_, err = fmt.Fprintf(out, "created topic %s with %d partition(s)\n", info.Name, info.Partitions)
							return err
						})
					}
				},
			},
			{
				name: "list", summary: "list topics",
				example: "ferry topics list --data-dir ./data --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						return withLog(*dataDir, func(l *flog.Log) error {
							var rows []topicSummary
							for _, t := range l.Topics() {
								rows = append(rows, summarize(l, t))
							}
							if *asJSON {
								if rows == nil {
									rows = []topicSummary{}
								}
								return json.NewEncoder(out).Encode(rows)
							}
							tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
							fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tRECORDS\tBYTES")
							for _, r := range rows {
								fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", r.Name, r.Partitions, r.Records, r.Bytes)
							}
							return tw.Flush()
						})
					}
				},
			},
			{
				name: "describe", args: "NAME", summary: "show a topic's partitions, offsets, sizes and configs",
				example: "ferry topics describe telemetry --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						return withLog(*dataDir, func(l *flog.Log) error {
							d, err := describe(l, args[0])
							if err != nil {
								return err
							}
							if *asJSON {
								return json.NewEncoder(out).Encode(d)
							}
							return printDescription(out, d)
						})
					}
				},
			},
			{
				name: "delete", args: "NAME", summary: "delete a topic and all its data",
				example: "ferry topics delete telemetry --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "NAME"); err != nil {
							return err
						}
						return withLog(*dataDir, func(l *flog.Log) error {
							if err := l.DeleteTopic(args[0]); err != nil {
								return err
							}
							_, err := fmt.Fprintf(out, "deleted topic %s\n", args[0])
							return err
						})
					}
				},
			},
		},
	}
}

func dataDirFlag(fs *pflag.FlagSet) *string {
	return fs.String("data-dir", "./data", "the node's data directory")
}

// withLog opens the log of a data directory for an offline command.
func withLog(dataDir string, fn func(*flog.Log) error) error {
	l, err := flog.Open(flog.Options{
		Dir: edge.LogDir(dataDir), LockTimeout: 300 * time.Millisecond, RetentionCheckInterval: -1,
		Logger: slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, flog.ErrDataDirLocked) {
		return fmt.Errorf("%s is in use by a running ferry: stop it first (online management arrives with the admin API)", dataDir)
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
			return nil, usagef("--config %q: want key=value", kv)
		}
		m[k] = v
	}
	return m, flog.ValidateConfigs(m)
}

type topicSummary struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	Partitions int32  `json:"partitions"`
	Records    int64  `json:"records"`
	Bytes      int64  `json:"bytes"`
}

func summarize(l *flog.Log, t flog.TopicInfo) topicSummary {
	s := topicSummary{Name: t.Name, ID: fmt.Sprintf("%x", t.ID[:]), Partitions: t.Partitions}
	for i := int32(0); i < t.Partitions; i++ {
		if p, err := l.Partition(t.Name, i); err == nil {
			s.Records += p.EndOffset() - p.StartOffset()
			s.Bytes += p.Size()
		}
	}
	return s
}

type partitionDescription struct {
	Partition     int32 `json:"partition"`
	StartOffset   int64 `json:"start_offset"`
	EndOffset     int64 `json:"end_offset"`
	DurableOffset int64 `json:"durable_offset"`
	Bytes         int64 `json:"bytes"`
	Segments      int   `json:"segments"`
}

type configDescription struct {
	Value   string `json:"value"`
	Default bool   `json:"default"`
}

type topicDescription struct {
	topicSummary
	PartitionList []partitionDescription       `json:"partition_list"`
	Configs       map[string]configDescription `json:"configs"`
}

func describe(l *flog.Log, name string) (topicDescription, error) {
	t, err := l.Topic(name)
	if err != nil {
		return topicDescription{}, err
	}
	d := topicDescription{topicSummary: summarize(l, t), Configs: map[string]configDescription{}}
	for i := int32(0); i < t.Partitions; i++ {
		p, err := l.Partition(name, i)
		if err != nil {
			return d, err
		}
		d.PartitionList = append(d.PartitionList, partitionDescription{
			Partition: i, StartOffset: p.StartOffset(), EndOffset: p.EndOffset(), DurableOffset: p.DurableOffset(),
			Bytes: p.Size(), Segments: len(p.Segments()),
		})
	}
	vals, explicit, err := l.EffectiveConfigs(name)
	if err != nil {
		return d, err
	}
	for k, v := range vals {
		d.Configs[k] = configDescription{Value: v, Default: !explicit[k]}
	}
	return d, nil
}

func printDescription(out io.Writer, d topicDescription) error {
	fmt.Fprintf(out, "Topic: %s  id: %s  partitions: %d  records: %d  bytes: %d\n\n", d.Name, d.ID, d.Partitions, d.Records, d.Bytes)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tSTART\tEND\tDURABLE\tBYTES\tSEGMENTS")
	for _, p := range d.PartitionList {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%d\t%d\n", p.Partition, p.StartOffset, p.EndOffset, p.DurableOffset, p.Bytes, p.Segments)
	}
	fmt.Fprintln(tw, "\nCONFIG\tVALUE\tSOURCE")
	keys := make([]string, 0, len(d.Configs))
	for k := range d.Configs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		src := "topic"
		if d.Configs[k].Default {
			src = "default"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", k, d.Configs[k].Value, src)
	}
	return tw.Flush()
}
