package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/edge/adminapi"
)

// `ferry produce` and `ferry consume` are Kafka clients (franz-go) of a
// node's Kafka listener, as kcat is: nothing in them is ferry-specific but
// finding the listener through the admin API.

// kafkaOptions are the flags that find a node's Kafka listener.
type kafkaOptions struct {
	brokers *[]string
	admin   *adminOptions
}

func kafkaFlags(fs *pflag.FlagSet) kafkaOptions {
	return kafkaOptions{
		brokers: fs.StringSlice("brokers", nil, "host:port of the node's Kafka listener (default: what the node named by --admin says, else localhost:9092)"),
		admin:   adminFlags(fs),
	}
}

// seeds resolves the brokers: --brokers, else the Kafka listener the
// admin API reports (when --admin or FERRY_ADMIN names a node), else
// localhost:9092.
func (k kafkaOptions) seeds() ([]string, error) {
	if len(*k.brokers) > 0 {
		return *k.brokers, nil
	}
	if !k.admin.given() {
		return []string{"localhost:9092"}, nil
	}
	c, err := k.admin.client()
	if err != nil {
		return nil, err
	}
	var st adminapi.StatusView
	if _, err := c.get("/api/status", &st); err != nil {
		return nil, err
	}
	if st.Listeners.Kafka == "" {
		return nil, fmt.Errorf("%s runs no Kafka listener", c.base)
	}
	return []string{c.kafkaSeed(st.Listeners.Kafka)}, nil
}

// progressOut is where long-running commands report progress: standard
// error when it is a terminal, else nowhere (nil). Tests set it.
var progressOut = terminalStderr()

func terminalStderr() io.Writer {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return os.Stderr
	}
	return nil
}

// progress rewrites one status line on progressOut every interval until
// stopped, then erases it (the command prints its result on standard
// output).
type progress struct {
	w    io.Writer
	line func() string
	stop chan struct{}
	done chan struct{}
}

func startProgress(w io.Writer, interval time.Duration, line func() string) *progress {
	p := &progress{w: w, line: line, stop: make(chan struct{}), done: make(chan struct{})}
	if w == nil {
		close(p.done)
		return p
	}
	go func() {
		defer close(p.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fmt.Fprintf(p.w, "\r%s", p.line())
			case <-p.stop:
				fmt.Fprint(p.w, "\r\033[K")
				return
			}
		}
	}()
	return p
}

func (p *progress) end() {
	if p.w != nil {
		close(p.stop)
	}
	<-p.done
}

// explainProduceError says what a failed delivery means to someone at a
// terminal: the two a first try meets are a broker that cannot be reached
// and a topic the node does not create on use.
func explainProduceError(err error, topic string, timeout time.Duration) error {
	switch {
	case errors.Is(err, kerr.UnknownTopicOrPartition):
		return fmt.Errorf("%w: the node has no topic %s and does not create topics on use (--auto-create-topics=false): ferry topics create %s", err, topic, topic)
	case errors.Is(err, kgo.ErrRecordTimeout):
		return fmt.Errorf("%w: not delivered within --timeout %v (is the broker reachable? --brokers, --admin)", err, timeout)
	}
	return err
}

// produceResult is what `ferry produce --json` prints.
type produceResult struct {
	Topic      string                `json:"topic"`
	Records    int64                 `json:"records"`
	Partitions []producedToPartition `json:"partitions"`
}

type producedToPartition struct {
	Partition   int32 `json:"partition"`
	Records     int64 `json:"records"`
	FirstOffset int64 `json:"first_offset"`
	LastOffset  int64 `json:"last_offset"`
}

func produceCommand() *command {
	return &command{
		name: "produce", args: "TOPIC",
		summary: "produce records from standard input, one per line, to a node's Kafka listener (kcat -P)",
		example: "printf 'dev1:{\"t\":21.5}\\ndev2:{\"t\":19.0}\\n' | ferry produce telemetry --key-delimiter : --admin http://localhost:8080\n" +
			"ferry produce alarms --value 'door open' --key gw1 --header site=lyon --brokers localhost:9092",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			kafka := kafkaFlags(fs)
			key := fs.StringP("key", "k", "", "key of every record (default: none, or the part before --key-delimiter)")
			delim := fs.StringP("key-delimiter", "K", "", "split each line at the first occurrence of this into key and value")
			headers := fs.StringArrayP("header", "H", nil, "header key=value of every record (repeatable)")
			partition := fs.Int32P("partition", "p", -1, "partition to produce to (default: by key, Kafka's murmur2, like any Kafka producer; sticky without a key)")
			value := fs.String("value", "", "produce one record with this value instead of reading standard input")
			asJSON := fs.Bool("json", false, "print what was produced as JSON (records and offsets per partition)")
			timeout := fs.Duration("timeout", 30*time.Second, "how long a record may wait to be delivered (broker unreachable, topic missing) before the command fails")
			return func(args []string, out io.Writer) error {
				if *timeout < time.Second {
					return usagef("--timeout %v: want at least 1s", *timeout)
				}
				if err := exactArgs(args, "TOPIC"); err != nil {
					return err
				}
				var hs []kgo.RecordHeader
				for _, h := range *headers {
					k, v, ok := strings.Cut(h, "=")
					if !ok || k == "" {
						return usagef("--header %q: want key=value", h)
					}
					hs = append(hs, kgo.RecordHeader{Key: k, Value: []byte(v)})
				}
				seeds, err := kafka.seeds()
				if err != nil {
					return err
				}
				// As kcat: the topic is created on first use where the node
				// allows it (--auto-create-topics); a record not delivered
				// within --timeout fails instead of waiting for ever.
				opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(args[0]), kgo.ProducerLinger(5 * time.Millisecond),
					kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(*timeout)}
				if *partition >= 0 {
					opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
				}
				cl, err := kgo.NewClient(opts...)
				if err != nil {
					return err
				}
				defer cl.Close()
				ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()

				var (
					mu       sync.Mutex
					firstErr error
					res      = produceResult{Topic: args[0]}
					parts    = map[int32]*producedToPartition{}
					sent     int64
				)
				done := func(r *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						if firstErr == nil {
							firstErr = err
						}
						return
					}
					res.Records++
					p := parts[r.Partition]
					if p == nil {
						p = &producedToPartition{Partition: r.Partition, FirstOffset: r.Offset}
						parts[r.Partition] = p
					}
					p.Records++
					p.FirstOffset, p.LastOffset = min(p.FirstOffset, r.Offset), max(p.LastOffset, r.Offset)
				}
				send := func(line []byte) {
					r := &kgo.Record{Value: line, Headers: hs, Partition: max(*partition, 0)}
					if *key != "" {
						r.Key = []byte(*key)
					}
					if *delim != "" {
						if k, v, ok := strings.Cut(string(line), *delim); ok {
							r.Key, r.Value = []byte(k), []byte(v)
						}
					}
					mu.Lock()
					sent++
					mu.Unlock()
					cl.Produce(ctx, r, done)
				}
				prog := startProgress(progressOut, 250*time.Millisecond, func() string {
					mu.Lock()
					defer mu.Unlock()
					return fmt.Sprintf("produced %d record(s) to %s", res.Records, args[0])
				})
				if fs.Changed("value") {
					send([]byte(*value))
				} else {
					sc := bufio.NewScanner(stdin)
					sc.Buffer(make([]byte, 64<<10), 16<<20)
					for sc.Scan() && ctx.Err() == nil {
						send(append([]byte(nil), sc.Bytes()...))
						mu.Lock()
						failed := firstErr != nil
						mu.Unlock()
						if failed {
							break
						}
					}
					if err := sc.Err(); err != nil {
						prog.end()
						return fmt.Errorf("reading standard input: %w", err)
					}
				}
				ferr := cl.Flush(ctx)
				prog.end()
				mu.Lock()
				defer mu.Unlock()
				// Whatever stopped it, fewer records produced than read is
				// a failure: 130 on an interrupt, as a shell reports one.
				if ctx.Err() != nil {
					return exitError{code: 130, err: fmt.Errorf("interrupted: %d of %d record(s) produced to %s", res.Records, sent, args[0])}
				}
				if firstErr != nil {
					return fmt.Errorf("producing to %s: %w (%d of %d record(s) produced)", args[0], explainProduceError(firstErr, args[0], *timeout), res.Records, sent)
				}
				if ferr != nil {
					return fmt.Errorf("producing to %s: %w (%d of %d record(s) produced)", args[0], ferr, res.Records, sent)
				}
				if res.Records != sent {
					return fmt.Errorf("producing to %s: %d of %d record(s) produced", args[0], res.Records, sent)
				}
				res.Partitions = []producedToPartition{}
				for _, p := range parts {
					res.Partitions = append(res.Partitions, *p)
				}
				sort.Slice(res.Partitions, func(i, j int) bool { return res.Partitions[i].Partition < res.Partitions[j].Partition })
				if *asJSON {
					return json.NewEncoder(out).Encode(res)
				}
				_, err = fmt.Fprintf(out, "produced %d record(s) to %s\n", res.Records, args[0])
				return err
			}
		},
	}
}
