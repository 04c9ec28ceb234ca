package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// consumedRecord is one line of `ferry consume --json`. Keys, values and
// header values that are not UTF-8 come base64-encoded in the *_base64
// field instead.
type consumedRecord struct {
	Topic       string           `json:"topic"`
	Partition   int32            `json:"partition"`
	Offset      int64            `json:"offset"`
	Timestamp   time.Time        `json:"timestamp"`
	Key         *string          `json:"key"`
	KeyBase64   string           `json:"key_base64,omitempty"`
	Value       *string          `json:"value"`
	ValueBase64 string           `json:"value_base64,omitempty"`
	Headers     []consumedHeader `json:"headers"`
}

type consumedHeader struct {
	Key         string  `json:"key"`
	Value       *string `json:"value"`
	ValueBase64 string  `json:"value_base64,omitempty"`
}

// text returns b as a JSON string, or nil and its base64 form when it is
// not UTF-8; nil bytes (a null key or value) are nil and "".
func text(b []byte) (*string, string) {
	if b == nil {
		return nil, ""
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, ""
	}
	return nil, base64.StdEncoding.EncodeToString(b)
}

func newConsumedRecord(r *kgo.Record) consumedRecord {
	c := consumedRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp.UTC(), Headers: []consumedHeader{}}
	c.Key, c.KeyBase64 = text(r.Key)
	c.Value, c.ValueBase64 = text(r.Value)
	for _, h := range r.Headers {
		ch := consumedHeader{Key: h.Key}
		ch.Value, ch.ValueBase64 = text(h.Value)
		c.Headers = append(c.Headers, ch)
	}
	return c
}

func consumeCommand() *command {
	return &command{
		name: "consume", args: "TOPIC",
		summary: "print records from a node's Kafka listener, alone or as a consumer group (kcat -C / -G)",
		example: "ferry consume telemetry --from-beginning --exit --admin http://localhost:8080\n" +
			"ferry consume telemetry --group dashboards --key-delimiter ' ' --print-headers\n" +
			"ferry consume telemetry --from-beginning --count 10 --json | jq .value",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			kafka := kafkaFlags(fs)
			group := fs.StringP("group", "g", "", "consume as a member of this consumer group, committing its offsets")
			fromBeginning := fs.Bool("from-beginning", false, "start at the start of each partition (in a group: where it has committed nothing)")
			offset := fs.StringP("offset", "o", "", "start at: beginning, end, or an offset (without --group)")
			partitions := fs.Int32SliceP("partition", "p", nil, "only these partitions (repeatable; without --group)")
			count := fs.IntP("count", "c", 0, "exit after this many records (0: no limit)")
			exit := fs.BoolP("exit", "e", false, "exit once every partition is read up to where it ended at the start")
			delim := fs.StringP("key-delimiter", "K", "", "print the key, this, then the value (default: the value only)")
			printHeaders := fs.Bool("print-headers", false, "print the headers after the value, as key=value separated by spaces")
			asJSON := fs.Bool("json", false, "print one JSON object per record: topic, partition, offset, timestamp, key, value, headers")
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args, "TOPIC"); err != nil {
					return err
				}
				topic := args[0]
				if *group != "" && (*offset != "" || len(*partitions) > 0) {
					return usagef("--offset and --partition choose where to read without a group; a group reads where it committed")
				}
				start := kgo.NewOffset().AtEnd()
				switch {
				case *fromBeginning && *offset != "":
					return usagef("--from-beginning and --offset exclude each other")
				case *fromBeginning || *offset == "beginning":
					start = kgo.NewOffset().AtStart()
				case *offset == "" || *offset == "end":
				default:
					n, err := strconv.ParseInt(*offset, 10, 64)
					if err != nil || n < 0 {
						return usagef("--offset %q: want beginning, end or an offset", *offset)
					}
					start = kgo.NewOffset().At(n)
				}
				seeds, err := kafka.seeds()
				if err != nil {
					return err
				}
				ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()
				adm, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
				if err != nil {
					return err
				}
				defer adm.Close()
				admin := kadm.NewClient(adm)
				ends, err := admin.ListEndOffsets(ctx, topic)
				if err == nil {
					err = ends.Error()
				}
				if err != nil {
					return fmt.Errorf("topic %s: %w", topic, err)
				}
				c := &consumption{topic: topic, exit: *exit, count: *count, target: map[int32]int64{}, pos: map[int32]int64{}, scope: map[int32]bool{}}
				ends.Each(func(o kadm.ListedOffset) { c.target[o.Partition] = o.Offset })
				opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.FetchMaxWait(500 * time.Millisecond), kgo.KeepRetryableFetchErrors()}
				if *group != "" {
					// What was printed is committed after each poll, once
					// written out, with rebalances held off meanwhile: a
					// record is never committed unprinted, and partitions
					// change hands only between polls.
					opts = append(opts, kgo.ConsumerGroup(*group), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(start),
						kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll(),
						kgo.OnPartitionsAssigned(func(ctx context.Context, _ *kgo.Client, a map[string][]int32) {
							c.assigned(ctx, admin, *group, a[topic], start)
						}),
						kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { c.revoked(r[topic]) }),
						kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, r map[string][]int32) { c.revoked(r[topic]) }))
				} else {
					scope := *partitions
					if len(scope) == 0 {
						for p := range c.target {
							scope = append(scope, p)
						}
					}
					starts, err := admin.ListStartOffsets(ctx, topic)
					if err != nil {
						return err
					}
					parts := map[int32]kgo.Offset{}
					for _, p := range scope {
						end, ok := c.target[p]
						if !ok {
							return fmt.Errorf("topic %s has no partition %d", topic, p)
						}
						parts[p] = start
						pos := end // AtEnd
						switch {
						case *fromBeginning || *offset == "beginning":
							s, _ := starts.Lookup(topic, p)
							pos = s.Offset
						case *offset != "" && *offset != "end":
							pos, _ = strconv.ParseInt(*offset, 10, 64)
						}
						c.scope[p], c.pos[p] = true, pos
					}
					opts = append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
				}
				cl, err := kgo.NewClient(opts...)
				if err != nil {
					return err
				}
				defer cl.Close()
				pctx, cancel := context.WithCancel(ctx)
				defer cancel()
				c.cancel = cancel
				c.check()

				w := bufio.NewWriter(out)
				enc := json.NewEncoder(w)
				var printed int64
				var mu sync.Mutex
				prog := startProgress(progressOut, 250*time.Millisecond, func() string {
					mu.Lock()
					defer mu.Unlock()
					return fmt.Sprintf("consumed %d record(s) from %s", printed, topic)
				})
				defer prog.end()
				var ferr error
				// commit writes out what was printed and, in a group,
				// commits it.
				commit := func(recs []*kgo.Record) error {
					if err := w.Flush(); err != nil {
						return err
					}
					if *group == "" || len(recs) == 0 {
						return nil
					}
					cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer ccancel()
					if err := cl.CommitRecords(cctx, recs...); err != nil {
						return fmt.Errorf("committing the group's offsets: %w", err)
					}
					return nil
				}
				for stop := false; !stop && pctx.Err() == nil && ferr == nil; {
					fetches := cl.PollFetches(pctx)
					fetches.EachError(func(t string, p int32, err error) {
						switch {
						case errors.Is(err, context.Canceled) || ferr != nil:
						case errors.Is(err, kerr.CorruptMessage):
							// Retriable to franz-go, which would retry it
							// forever: a damaged batch the node reports.
							ferr = fmt.Errorf("%s-%d: %w: the node cannot read the batch at this partition's next offset (its /readyz and ferry status say where; ferry log truncate cuts the partition there)", t, p, err)
						case kerr.IsRetriable(err):
							// franz-go retries these itself (a moved
							// leader, a broker restarting).
						default:
							ferr = fmt.Errorf("%s-%d: %w", t, p, err)
						}
					})
					var done []*kgo.Record
					for _, r := range fetches.Records() {
						if *asJSON {
							if err := enc.Encode(newConsumedRecord(r)); err != nil {
								return err
							}
						} else {
							if *delim != "" {
								w.Write(r.Key)
								w.WriteString(*delim)
							}
							w.Write(r.Value)
							if *printHeaders {
								for _, h := range r.Headers {
									fmt.Fprintf(w, " %s=%s", h.Key, h.Value)
								}
							}
							w.WriteByte('\n')
						}
						mu.Lock()
						printed++
						mu.Unlock()
						done = append(done, r)
						if stop = c.consumed(r); stop {
							break
						}
					}
					if err := commit(done); err != nil {
						return err
					}
					if *group != "" {
						cl.AllowRebalance()
					}
				}
				return ferr
			}
		},
	}
}

// consumption tracks when `ferry consume` is done: after count records,
// or (exit) once every partition in scope is read up to its end offset
// at the start. In a group, the scope is what the group assigned.
type consumption struct {
	topic  string
	exit   bool
	count  int
	cancel context.CancelFunc

	mu     sync.Mutex
	target map[int32]int64 // end offsets at the start
	pos    map[int32]int64 // next offset to read
	scope  map[int32]bool  // partitions read
	seen   int
}

// consumed counts r and says whether to stop.
func (c *consumption) consumed(r *kgo.Record) bool {
	c.mu.Lock()
	c.seen++
	c.pos[r.Partition] = max(c.pos[r.Partition], r.Offset+1)
	stop := c.count > 0 && c.seen >= c.count
	c.mu.Unlock()
	return stop || c.check()
}

// check stops the consumption (cancels its poll) when every partition in
// scope is read to its target; it says whether it did.
func (c *consumption) check() bool {
	if !c.exit {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.scope) == 0 {
		return false // a group member waiting for an assignment
	}
	for p := range c.scope {
		if c.pos[p] < c.target[p] {
			return false
		}
	}
	if c.cancel != nil {
		c.cancel()
	}
	return true
}

// assigned adds a group's newly assigned partitions to the scope, from
// where the group committed (or the start offset chosen where it did not).
func (c *consumption) assigned(ctx context.Context, admin *kadm.Client, group string, parts []int32, start kgo.Offset) {
	committed, _ := admin.FetchOffsets(ctx, group)
	var starts kadm.ListedOffsets
	if start.EpochOffset().Offset == -2 {
		starts, _ = admin.ListStartOffsets(ctx, c.topic)
	}
	c.mu.Lock()
	for _, p := range parts {
		pos := c.target[p] // reset to the end
		if o, ok := committed.Lookup(c.topic, p); ok && o.At >= 0 {
			pos = o.At
		} else if s, ok := starts.Lookup(c.topic, p); ok {
			pos = s.Offset
		}
		c.scope[p] = true
		c.pos[p] = max(c.pos[p], pos)
	}
	c.mu.Unlock()
	c.check()
}

func (c *consumption) revoked(parts []int32) {
	c.mu.Lock()
	for _, p := range parts {
		delete(c.scope, p)
	}
	c.mu.Unlock()
}
