package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kgo"
)

// flakyLink is a toxiproxy proxy, embedded in the test, between the edge
// and the center's mirror receiver.
type flakyLink struct {
	t     testing.TB
	proxy *toxiproxy.Proxy
}

func newFlakyLink(t testing.TB, upstream string) *flakyLink {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, "mirror", "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return &flakyLink{t: t, proxy: p}
}

func (l *flakyLink) addr() string { return l.proxy.Listen }

// toxic adds a toxic on the edge → center stream, e.g.
// toxic("bw", "bandwidth", `"rate":64`).
func (l *flakyLink) toxic(name, typ, attrs string) {
	l.t.Helper()
	l.toxicStream(name, typ, "upstream", attrs)
}

// toxicStream adds a toxic on stream: "upstream" (towards the upstream
// address) or "downstream" (its answers).
func (l *flakyLink) toxicStream(name, typ, stream, attrs string) {
	l.t.Helper()
	js := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"attributes":{%s}}`, name, typ, stream, attrs)
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(js)); err != nil {
		l.t.Fatal(err)
	}
}

func (l *flakyLink) remove(name string) {
	l.t.Helper()
	if err := l.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
		l.t.Fatal(err)
	}
}

// produceKafka produces n records of about size bytes to topic at addr
// with acks=all and returns once all are acknowledged. Sensor-like JSON,
// padded with random hex so that compression cannot make a slow link fast.
// opts are added to the producer's (kgo.ProducerBatchMaxBytes, say).
func produceKafka(t *testing.T, addr, topic string, n, size int, tag string, opts ...kgo.Opt) {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation()}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := fmt.Sprintf(`{"device":"dev%d","seq":"%s-%d","temperature":%.2f,"humidity":%.2f}`, i%40, tag, i, 19+float64(i%70)/10, 40+float64(i%90)/10)
		if len(v) < size {
			pad := make([]byte, (size-len(v)+1)/2)
			rand.Read(pad)
			v += hex.EncodeToString(pad)[:size-len(v)]
		}
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("dev%d", i%40)), Value: []byte(v)}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// TestMirrorOverFlakyLink puts the link through toxiproxy: first it is
// down while the edge keeps ingesting, then it is slow (64 KiB/s) and far
// (200 ms). The center ends with every record the edge acknowledged, once,
// at the edge's offsets. (Resets mid-chunk: see TestMirrorResetMidChunk.)
func TestMirrorOverFlakyLink(t *testing.T) {
	center := startFull(t, t.TempDir(), "", "--mirror-token", "gw1=s3cret")
	link := newFlakyLink(t, center.mirrorAddr)
	edge := startEdge(t, t.TempDir(), "--mirror-to", link.addr(), "--mirror-edge-id", "gw1", "--mirror-token", "s3cret",
		"--default-partitions", "2", "--mirror-chunk-bytes", "16384", "--mirror-ack-timeout", "3s", "--mirror-min-rate", "16384")

	// 1. The link is down during steady production.
	produceKafka(t, edge.kafkaAddr, "orders", 500, 100, "before")
	waitMirrored(t, edge, center, "orders")
	link.proxy.Stop()
	produceKafka(t, edge.kafkaAddr, "orders", 2000, 100, "outage")
	if got := endsOf(t, center.kafkaAddr, "gw1.orders"); got[0]+got[1] != 500 {
		t.Fatalf("the center moved on while the link was down: %v", got)
	}
	if err := link.proxy.Start(); err != nil {
		t.Fatal(err)
	}
	waitMirrored(t, edge, center, "orders")

	// 2. Slow and far.
	link.toxic("bw", "bandwidth", `"rate":64`)
	link.toxic("far", "latency", `"latency":200`)
	// ~470 KB on the wire, in one batch (so one chunk) per partition: 7 s at 64 KiB/s.
	produceKafka(t, edge.kafkaAddr, "orders", 3000, 200, "slow")
	n := waitMirrored(t, edge, center, "orders")
	t.Logf("%d records identical at the center after an outage and over a 64 KiB/s, 200 ms link", n)
}
