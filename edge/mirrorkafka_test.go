package edge

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
	"ferry/mirror"
)

// TestMirrorKafkaIntoFerryFull mirrors an edge into a ferry full node over
// its Kafka listener (the idempotent mode: ferry's Kafka front end has no
// transactions), as into any Kafka cluster: every record once, in its
// partition, with its key, value, headers and timestamp and a
// ferry.offset header equal to its edge offset; after the edge restarts
// it resumes from the full node's tail, writing nothing twice. The status
// shows the Kafka target.
func TestMirrorKafkaIntoFerryFull(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	full, err := Start(Options{Mode: "full", DataDir: t.TempDir(), KafkaAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	dir := t.TempDir()
	start := func() *Node {
		n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", Logger: quiet,
			MirrorTo: mirror.SenderOptions{EdgeID: "gw1", AckTimeout: 10 * time.Second, ChunkBytes: 8 << 10,
				Kafka: &mirror.KafkaOptions{Brokers: []string{full.KafkaAddr()}}}})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	edge := start()
	defer func() { edge.Close() }()
	if _, err := edge.Log().CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	appendRecords := func(n int, tag string) {
		for p := int32(0); p < 2; p++ {
			part, _ := edge.Log().Partition("telemetry", p)
			for i := 0; i < n; i++ {
				recs := []flog.Record{{Key: []byte("dev" + strconv.Itoa(i%3)), Value: []byte(fmt.Sprintf("%s-%d-%d", tag, p, i)),
					Headers: []kmsg.Header{{Key: "unit", Value: []byte("C")}}, Timestamp: time.Now().UnixMilli() - 5000}}
				if _, err := part.Append(flog.AppendBatch(nil, recs)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	check := func() {
		t.Helper()
		for p := int32(0); p < 2; p++ {
			src, _ := edge.Log().Partition("telemetry", p)
			waitUntil(t, "the copy in the full node", func() bool {
				return edge.Sender().Acked("telemetry", p) >= src.EndOffset()
			})
			dst, err := full.Log().Partition("gw1.telemetry", p)
			if err != nil {
				t.Fatal(err)
			}
			want, got := decodeAll(t, src), decodeAll(t, dst)
			if len(got) != len(want) {
				t.Fatalf("partition %d: the full node has %d records, the edge %d", p, len(got), len(want))
			}
			for i, w := range want {
				g := got[i]
				if !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) || g.Timestamp != w.Timestamp {
					t.Fatalf("partition %d record %d: got %q=%q at %d, want %q=%q at %d", p, i, g.Key, g.Value, g.Timestamp, w.Key, w.Value, w.Timestamp)
				}
				if len(g.Headers) != 2 || g.Headers[0].Key != "unit" || g.Headers[1].Key != mirror.HeaderOffset ||
					string(g.Headers[1].Value) != strconv.FormatInt(w.Offset, 10) {
					t.Fatalf("partition %d record %d (edge offset %d): headers %v", p, i, w.Offset, g.Headers)
				}
			}
		}
	}
	appendRecords(40, "a")
	check()
	st := mirrorStatus(t, edge)
	if !st.LinkUp || !strings.HasPrefix(st.Center, "kafka://") || len(st.Partitions) != 2 || st.Partitions[0].Acked != 40 || st.WireBytes <= 0 {
		t.Errorf("status of a caught-up Kafka mirror: %+v", st)
	}

	// The edge restarts; its records written while it was down ship once.
	edge.Close()
	edge = start()
	appendRecords(10, "b")
	check()
}

func decodeAll(t *testing.T, p *flog.Partition) []flog.DecodedRecord {
	t.Helper()
	var out []flog.DecodedRecord
	for off := p.StartOffset(); off < p.EndOffset(); {
		rr, err := p.Read(off, 1<<20, nil)
		if err != nil {
			t.Fatal(err)
		}
		for pos := 0; pos < len(rr.Data); {
			h, err := flog.ParseBatchHeader(rr.Data[pos:])
			if err != nil || pos+int(h.Length) > len(rr.Data) {
				break
			}
			_, recs, err := flog.DecodeRecords(rr.Data[pos : pos+int(h.Length)])
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, recs...)
			pos += int(h.Length)
			off = h.LastOffset() + 1
		}
	}
	return out
}

// TestMirrorKafkaOverTLSWithSCRAM mirrors into a Kafka cluster (kfake)
// that takes only TLS and SCRAM-SHA-512, with the options the flags build:
// the CA verifying each broker by its own host, the mechanism from
// mirror.ParseKafkaSASL. Without the CA nothing is shipped.
func TestMirrorKafkaOverTLSWithSCRAM(t *testing.T) {
	pki := newTestPKI(t, "unused")
	c, err := kfake.NewCluster(kfake.NumBrokers(2), kfake.TLS(&tls.Config{Certificates: []tls.Certificate{pki.server}}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "gw1", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mech, err := mirror.ParseKafkaSASL("scram-sha-512", "gw1", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	start := func(conf *tls.Config) *Node {
		n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quiet,
			MirrorTo: mirror.SenderOptions{EdgeID: "gw1", AckTimeout: 5 * time.Second,
				Kafka: &mirror.KafkaOptions{Brokers: c.ListenAddrs(), TLS: conf, SASL: mech}}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if _, err := n.Log().CreateTopic("telemetry", 1, nil); err != nil {
			t.Fatal(err)
		}
		p, _ := n.Log().Partition("telemetry", 0)
		if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Key: []byte("dev1"), Value: []byte("21.5"), Timestamp: time.Now().UnixMilli()}})); err != nil {
			t.Fatal(err)
		}
		return n
	}
	trusting := start(&tls.Config{RootCAs: pki.pool, MinVersion: tls.VersionTLS12})
	waitUntil(t, "the record acknowledged over TLS and SCRAM", func() bool { return trusting.Sender().Acked("telemetry", 0) == 1 })
	untrusting := start(&tls.Config{MinVersion: tls.VersionTLS12})
	waitUntil(t, "the untrusted brokers in the status", func() bool {
		le := mirrorStatus(t, untrusting).LastError
		return le != nil && le.Reason == "tls"
	})
	if got := untrusting.Sender().Acked("telemetry", 0); got != 0 {
		t.Fatalf("acknowledged %d without trusting the brokers", got)
	}
}
