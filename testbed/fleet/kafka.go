package fleet

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"
)

// ProducerConfig configures a Kafka producer (franz-go, idempotent,
// acks=all).
type ProducerConfig struct {
	Addr  string // the broker's Kafka address
	Topic string
	// Keys is how many keys the records spread over, named
	// KeyPrefix + "k00", "k01", …; each key's records carry their own
	// sequence numbers.
	Keys      int
	KeyPrefix string
	// Rate is records per second in all, Size the approximate size of a
	// value: order JSON padded with random hex (which compresses about 2:1,
	// so a slow link stays slow).
	Rate float64
	Size int
	// DeliveryTimeout bounds a record's retries (30 s when 0).
	DeliveryTimeout time.Duration
	Seed            uint64
	// Ledger records every record's outcome, by key (a new one when nil).
	Ledger *Ledger
}

// Producer produces at a set rate.
type Producer struct {
	cfg    ProducerConfig
	ledger *Ledger
	cl     *kgo.Client

	errMu   sync.Mutex
	lastErr error
}

// ProducerSummary is what a producer did.
type ProducerSummary struct {
	Counts
	Err string // the latest produce error
}

func (s ProducerSummary) String() string {
	str := fmt.Sprintf("%d produced, %d acked, %d failed", s.Sent, s.Acked, s.Failed)
	if s.Err != "" {
		str += " (" + s.Err + ")"
	}
	return str
}

// NewProducer connects a producer.
func NewProducer(cfg ProducerConfig) (*Producer, error) {
	if cfg.Keys <= 0 {
		cfg.Keys = 1
	}
	if cfg.DeliveryTimeout <= 0 {
		cfg.DeliveryTimeout = 30 * time.Second
	}
	if cfg.Ledger == nil {
		cfg.Ledger = NewLedger()
	}
	if cfg.Rate <= 0 {
		return nil, errors.New("fleet: ProducerConfig.Rate must be positive")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cfg.Addr), kgo.DefaultProduceTopic(cfg.Topic), kgo.AllowAutoTopicCreation(),
		kgo.RecordDeliveryTimeout(cfg.DeliveryTimeout), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return nil, err
	}
	return &Producer{cfg: cfg, ledger: cfg.Ledger, cl: cl}, nil
}

// Ledger is the producer's record of outcomes, by key.
func (p *Producer) Ledger() *Ledger { return p.ledger }

// Summary returns the counts so far.
func (p *Producer) Summary() ProducerSummary {
	s := ProducerSummary{Counts: p.ledger.Counts()}
	p.errMu.Lock()
	if p.lastErr != nil {
		s.Err = p.lastErr.Error()
	}
	p.errMu.Unlock()
	return s
}

// Run produces until ctx is done, waits for every record's outcome (at
// most DeliveryTimeout), closes the client and returns the summary.
func (p *Producer) Run(ctx context.Context) ProducerSummary {
	defer p.cl.Close()
	rnd := rand.New(rand.NewPCG(p.cfg.Seed, 0x6b61666b61))
	lim := rate.NewLimiter(rate.Limit(p.cfg.Rate), max(1, int(p.cfg.Rate/20)))
	keys := make([]string, p.cfg.Keys)
	seqs := make([]int64, p.cfg.Keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sk%02d", p.cfg.KeyPrefix, i)
	}
	pad := make([]byte, p.cfg.Size)
	for i := 0; lim.Wait(ctx) == nil; i++ {
		k := i % len(keys)
		key, seq := keys[k], seqs[k]
		seqs[k]++
		v := fmt.Appendf(nil, `{"key":%q,"seq":%d,"sent_us":%d,"order":{"line":%d,"sku":"SKU-%04d","qty":%d}`,
			key, seq, time.Now().UnixMicro(), rnd.IntN(8)+1, rnd.IntN(5000), rnd.IntN(40)+1)
		if n := (p.cfg.Size - len(v) - 10) / 2; n > 0 {
			for j := range pad[:n] {
				pad[j] = byte(rnd.Uint32())
			}
			v = append(v, `,"pad":"`...)
			v = hex.AppendEncode(v, pad[:n])
			v = append(v, '"')
		}
		v = append(v, '}')
		p.ledger.begin()
		p.cl.Produce(context.Background(), &kgo.Record{Key: []byte(key), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				p.ledger.end(key, seq, Failed)
				p.errMu.Lock()
				p.lastErr = err
				p.errMu.Unlock()
				return
			}
			p.ledger.end(key, seq, Acked)
		})
	}
	fctx, cancel := context.WithTimeout(context.Background(), p.cfg.DeliveryTimeout+5*time.Second)
	defer cancel()
	if err := p.cl.Flush(fctx); err != nil {
		// Whatever is still buffered fails now, through its callback.
		p.cl.PurgeTopicsFromClient(p.cfg.Topic)
	}
	for deadline := time.Now().Add(5 * time.Second); p.ledger.pending.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the purge's callbacks
	}
	return p.Summary()
}

// Consumer reads topics from the start, as they come, and measures each
// record's latency from the "sent_us" in its payload to its arrival.
type Consumer struct {
	cl      *kgo.Client
	cancel  context.CancelFunc
	done    chan struct{}
	latency Histogram
	records atomic.Int64
}

// StartConsumer starts consuming topics at addr (topics that do not exist
// yet are picked up when they appear).
func StartConsumer(addr string, topics ...string) (*Consumer, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(time.Second),
		kgo.FetchMaxWait(250*time.Millisecond))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Consumer{cl: cl, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) {
				c.records.Add(1)
				if us := sentUS(r.Value); us > 0 {
					c.latency.Record(now.Sub(time.UnixMicro(us)))
				}
			})
		}
	}()
	return c, nil
}

// sentUS finds "sent_us":N in a fleet payload without decoding it all.
func sentUS(v []byte) int64 {
	const field = `"sent_us":`
	i := strings.Index(string(v), field)
	if i < 0 {
		return 0
	}
	var n int64
	for _, c := range v[i+len(field):] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

// Records is how many records the consumer has read.
func (c *Consumer) Records() int64 { return c.records.Load() }

// Latency summarises the records' latencies so far.
func (c *Consumer) Latency() LatencySummary { return c.latency.Summary() }

// Close stops the consumer.
func (c *Consumer) Close() {
	c.cancel()
	<-c.done
	c.cl.Close()
}

// EndOffsets returns the end offset of each partition of topics at addr;
// a topic that does not exist is left out.
func EndOffsets(ctx context.Context, addr string, topics ...string) (map[string][]int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	lo, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return nil, err
	}
	out := map[string][]int64{}
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			return
		}
		s := out[o.Topic]
		for int32(len(s)) <= o.Partition {
			s = append(s, 0)
		}
		s[o.Partition] = o.Offset
		out[o.Topic] = s
	})
	return out, nil
}

// Topics lists the topics at addr, internal ones (named __*) left out.
func Topics(ctx context.Context, addr string) ([]string, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range td.Names() {
		if !strings.HasPrefix(t, "__") {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out, nil
}

// ReadAll reads every record of topic at addr up to the end offsets it
// has when called, in partition and offset order.
func ReadAll(ctx context.Context, addr, topic string) ([]Record, error) {
	ends, err := EndOffsets(ctx, addr, topic)
	if err != nil {
		return nil, err
	}
	want := ends[topic]
	offsets := map[int32]kgo.Offset{}
	for p := range want {
		offsets[int32(p)] = kgo.NewOffset().AtStart()
	}
	if len(offsets) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	parts := make([][]Record, len(want))
	next := make([]int64, len(want))
	done := func() bool {
		for p, e := range want {
			if next[p] < e {
				return false
			}
		}
		return true
	}
	for !done() {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("fleet: reading %s: at %v of %v: %w", topic, next, want, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			if int(r.Partition) >= len(want) || r.Offset >= want[r.Partition] {
				return
			}
			parts[r.Partition] = append(parts[r.Partition], Record{Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value})
			next[r.Partition] = r.Offset + 1
		})
	}
	var out []Record
	for _, p := range parts {
		out = append(out, p...)
	}
	return out, nil
}
