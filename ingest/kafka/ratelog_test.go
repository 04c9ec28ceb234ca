package kafka

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

func TestRateLogOncePerKeyAMinute(t *testing.T) {
	var r rateLog[string]
	t0 := time.Unix(1000, 0)
	if ok, _ := r.allow("a", t0); !ok {
		t.Fatal("first occurrence not logged")
	}
	for i := 1; i <= 3; i++ {
		if ok, _ := r.allow("a", t0.Add(time.Duration(i)*time.Second)); ok {
			t.Fatal("repeat within a minute logged")
		}
	}
	if ok, _ := r.allow("b", t0.Add(time.Second)); !ok {
		t.Fatal("another key held back by the first")
	}
	if ok, n := r.allow("a", t0.Add(logEvery)); !ok || n != 3 {
		t.Fatalf("after a minute: %v, %d not logged; want true, 3", ok, n)
	}
	// Bounded: keys past maxRateKeys share one entry.
	for i := range 2 * maxRateKeys {
		r.allow(fmt.Sprint("k", i), t0.Add(2*time.Second))
	}
	if len(r.last) > maxRateKeys {
		t.Fatalf("%d keys tracked, cap %d", len(r.last), maxRateKeys)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A refusal is logged naming principal, operation and resource, once for
// a client that retries.
func TestACLRefusalLoggedOnce(t *testing.T) {
	var logs lockedBuf
	b := startBroker(t, func(o *Options) {
		o.SASLMechanisms = []string{SASLPlain}
		o.Credentials = memCreds{"alice": "s3cret"}
		o.ACLs = denyAll{}
		o.AuthFailureDelay = -1
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	if _, err := b.log.CreateTopic("sensors.temp", 1, nil); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 4 {
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = "sensors.temp"
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err == nil && len(resp.Topics) == 1 {
			err = kerr.ErrorForCode(resp.Topics[0].Partitions[0].ErrorCode)
		}
		if !errors.Is(err, kerr.TopicAuthorizationFailed) {
			t.Fatalf("ListOffsets under deny-all: %v", err)
		}
	}
	out := logs.String()
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, `"refused by an ACL"`) && strings.Contains(l, `"resource":"sensors.temp"`) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], `"principal":"User:alice"`) && !strings.Contains(lines[0], `"principal":"alice"`) ||
		!strings.Contains(lines[0], `"operation":"DESCRIBE"`) || !strings.Contains(lines[0], `"resource_type":"TOPIC"`) {
		t.Fatalf("refusal lines for 4 refused requests: %q\n%s", lines, out)
	}
}
