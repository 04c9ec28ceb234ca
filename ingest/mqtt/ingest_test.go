package mqtt

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	flog "ferry/log"
)

func pub(t testing.TB, c *paho.Client, p *paho.Publish) *paho.PublishResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, p)
	if err != nil {
		t.Fatalf("publish %s: %v", p.Topic, err)
	}
	return resp
}

// A QoS 1 publish becomes one record: the payload unchanged, the key from
// the rule's template, the partition Kafka's partitioner picks for it, and
// headers carrying the MQTT topic, QoS, retain, client id and MQTT 5
// properties.
func TestPublishBecomesRecord(t *testing.T) {
	b := startBroker(t, "", nil)
	c := b.connect(t, &paho.Connect{ClientID: "dev1", CleanStart: true}, nil)
	before := time.Now().UnixMilli()
	pub(t, c, &paho.Publish{Topic: "factory/lyon/dev1/telemetry", QoS: 1, Retain: true, Payload: []byte(`{"t":21.5}`),
		Properties: &paho.PublishProperties{ContentType: "application/json", ResponseTopic: "replies/dev1",
			CorrelationData: []byte{1, 2, 3}, User: paho.UserProperties{{Key: "unit", Value: "C"}, {Key: "unit", Value: "K"}}}})
	after := time.Now().UnixMilli()

	want := flog.PartitionForKey([]byte("dev1"), 4)
	recs := b.records(t, "telemetry")
	if len(recs[want]) != 1 || b.count("telemetry") != 1 {
		t.Fatalf("want one record on partition %d, got %v", want, recs)
	}
	r := recs[want][0]
	if string(r.Key) != "dev1" || string(r.Value) != `{"t":21.5}` {
		t.Errorf("key %q value %q", r.Key, r.Value)
	}
	if r.Timestamp < before || r.Timestamp > after {
		t.Errorf("timestamp %d not the receive time (%d..%d)", r.Timestamp, before, after)
	}
	for k, v := range map[string]string{
		HeaderTopic: "factory/lyon/dev1/telemetry", HeaderQoS: "1", HeaderRetain: "true", HeaderClientID: "dev1",
		HeaderContentType: "application/json", HeaderResponseTopic: "replies/dev1", HeaderCorrelationData: "\x01\x02\x03",
	} {
		if got, ok := header(r, k); !ok || got != v {
			t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	var units []string
	for _, h := range r.Headers {
		if h.Key == "unit" {
			units = append(units, string(h.Value))
		}
	}
	if fmt.Sprint(units) != "[C K]" {
		t.Errorf("user properties as headers: %v, want [C K] in order", units)
	}
	if got := b.publishes("1", resultStored); got != 1 {
		t.Errorf("stored publishes metric = %v", got)
	}
}

// Publishes no rule matches go to the default topic keyed by client id;
// without a default topic they are dropped and counted.
func TestUnmatchedPublishes(t *testing.T) {
	b := startBroker(t, "", nil)
	c := b.connect(t, &paho.Connect{ClientID: "meter7", CleanStart: true}, nil)
	pub(t, c, &paho.Publish{Topic: "home/kitchen/power", QoS: 1, Payload: []byte("42")})
	recs := b.records(t, "mqtt")
	if n := b.count("mqtt"); n != 1 {
		t.Fatalf("default topic has %d records, want 1", n)
	}
	for _, rs := range recs {
		if string(rs[0].Key) != "meter7" {
			t.Errorf("default key %q, want the client id", rs[0].Key)
		}
	}

	d := startBroker(t, "", func(o *Options) { o.DefaultTopic = "" })
	c2 := d.connect(t, &paho.Connect{ClientID: "meter7", CleanStart: true}, nil)
	pub(t, c2, &paho.Publish{Topic: "home/kitchen/power", QoS: 1, Payload: []byte("42")})
	if got := d.publishes("1", resultUnmatched); got != 1 {
		t.Errorf("unmatched metric = %v, want 1", got)
	}
	if got := d.srv.Dropped(); got["unmatched"] != 1 {
		t.Errorf("dropped %v, want one unmatched", got)
	}
	if got := b.srv.Dropped(); got["unmatched"] != 0 {
		t.Errorf("dropped %v with a default topic, want none", got)
	}
	if _, err := d.log.PartitionCount("mqtt"); err == nil {
		t.Errorf("a default topic was created although none is configured")
	}
}

// A PUBACK is sent only once its record is durable. The topic's group
// commit runs at most every 300 ms, so an acknowledgement sent on append
// would arrive before the durable offset passed the record.
func TestPubackWaitsForDurability(t *testing.T) {
	b := startBroker(t, "", func(o *Options) { o.Rules = nil; o.DefaultTopic = "slow" })
	if err := b.log.AlterConfigs("slow", map[string]string{"flush.policy": "interval", "flush.ms": "300"}, nil); err != nil {
		t.Fatal(err)
	}
	part, err := b.log.Partition("slow", 0)
	if err != nil {
		t.Fatal(err)
	}
	c := b.connect(t, &paho.Connect{ClientID: "d", CleanStart: true}, nil)
	for i := 0; i < 4; i++ {
		pub(t, c, &paho.Publish{Topic: "x", QoS: 1, Payload: []byte{byte(i)}})
		if end, durable := part.EndOffset(), part.DurableOffset(); durable < end {
			t.Fatalf("publish %d acknowledged with durable offset %d < end offset %d", i, durable, end)
		}
	}
	pub(t, c, &paho.Publish{Topic: "x", QoS: 2, Payload: []byte("q2")})
	if end, durable := part.EndOffset(), part.DurableOffset(); durable < end {
		t.Fatalf("QoS 2 publish completed with durable offset %d < end offset %d", durable, end)
	}
}

// Many publishes in flight on one connection are all stored, in order,
// and acknowledged in order, each once durable.
func TestPipelinedPublishesInOrder(t *testing.T) {
	b := startBroker(t, "", nil)
	c := b.connect(t, &paho.Connect{ClientID: "dev2", CleanStart: true}, nil)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := c.Publish(ctx, &paho.Publish{Topic: "factory/a/dev2/telemetry", QoS: byte(1 + i%2), Payload: []byte(fmt.Sprint(i))}); err != nil {
				errs <- err
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := b.count("telemetry"); got != n {
		t.Fatalf("%d records stored, want %d", got, n)
	}
	if got := b.srv.conn(b.clientByID(t, "dev2")).outstanding(); got != 0 {
		t.Errorf("%d acknowledgements still queued", got)
	}
}

// QoS 0 is stored and delivered without an acknowledgement.
func TestQoS0Stored(t *testing.T) {
	b := startBroker(t, "", nil)
	c := b.connect(t, &paho.Connect{ClientID: "dev3", CleanStart: true}, nil)
	for i := 0; i < 10; i++ {
		pub(t, c, &paho.Publish{Topic: "factory/a/dev3/telemetry", QoS: 0, Payload: []byte{byte(i)}})
	}
	waitFor(t, "10 QoS 0 records", func() bool { return b.count("telemetry") == 10 })
	var got []byte
	for _, rs := range b.records(t, "telemetry") {
		for _, r := range rs {
			got = append(got, r.Value...)
			if q, _ := header(r, HeaderQoS); q != "0" {
				t.Errorf("qos header %q", q)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}) {
		t.Errorf("QoS 0 records out of order or missing: %v", got)
	}
}

// The broker stays a broker: live subscribers get QoS 0, 1 and 2
// publishes with their properties, and a retained QoS 1 message reaches a
// later subscriber.
func TestSubscribersReceivePublishes(t *testing.T) {
	b := startBroker(t, "", nil)
	got := make(chan *paho.Publish, 10)
	sub := b.connect(t, &paho.Connect{ClientID: "watcher", CleanStart: true}, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "factory/#", QoS: 2}}}); err != nil {
		t.Fatal(err)
	}
	c := b.connect(t, &paho.Connect{ClientID: "dev4", CleanStart: true}, nil)
	for q := byte(0); q <= 2; q++ {
		pub(t, c, &paho.Publish{Topic: "factory/a/dev4/telemetry", QoS: q, Payload: []byte{'0' + q},
			Properties: &paho.PublishProperties{ContentType: "text/plain"}})
		select {
		case p := <-got:
			if string(p.Payload) != string([]byte{'0' + q}) || p.QoS != q || p.Properties.ContentType != "text/plain" {
				t.Fatalf("subscriber got %q qos %d props %+v for a QoS %d publish", p.Payload, p.QoS, p.Properties, q)
			}
		case <-ctx.Done():
			t.Fatalf("subscriber did not receive the QoS %d publish", q)
		}
	}

	pub(t, c, &paho.Publish{Topic: "factory/a/dev4/status", QoS: 1, Retain: true, Payload: []byte("online")})
	<-got
	late := make(chan *paho.Publish, 1)
	sub2 := b.connect(t, &paho.Connect{ClientID: "late", CleanStart: true}, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			late <- pr.Packet
			return true, nil
		}}
	})
	if _, err := sub2.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "factory/+/dev4/status", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-late:
		if string(p.Payload) != "online" || !p.Retain {
			t.Fatalf("late subscriber got %q retain=%v", p.Payload, p.Retain)
		}
	case <-ctx.Done():
		t.Fatal("retained message not delivered to a later subscriber")
	}
}

// MQTT 5 No Local: a client subscribed with No Local does not get its own
// QoS 1 publishes back, though another subscriber does.
func TestNoLocal(t *testing.T) {
	b := startBroker(t, "", nil)
	own := make(chan *paho.Publish, 4)
	c := b.connect(t, &paho.Connect{ClientID: "echo", CleanStart: true}, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			own <- pr.Packet
			return true, nil
		}}
	})
	other := make(chan *paho.Publish, 4)
	o := b.connect(t, &paho.Connect{ClientID: "other", CleanStart: true}, func(cc *paho.ClientConfig) {
		cc.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			other <- pr.Packet
			return true, nil
		}}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, cl := range []*paho.Client{c, o} {
		if _, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "factory/#", QoS: 1, NoLocal: true}}}); err != nil {
			t.Fatal(err)
		}
	}
	pub(t, c, &paho.Publish{Topic: "factory/a/echo/telemetry", QoS: 1, Payload: []byte("1")})
	select {
	case <-other:
	case <-ctx.Done():
		t.Fatal("the other subscriber got nothing")
	}
	pub(t, o, &paho.Publish{Topic: "factory/a/other/telemetry", QoS: 1, Payload: []byte("2")})
	select {
	case p := <-own:
		if string(p.Payload) != "2" {
			t.Fatalf("No Local subscriber got its own publish %q", p.Payload)
		}
	case <-ctx.Done():
		t.Fatal("echo got nothing")
	}
}

// A connection that stopped publishing holds no drain goroutine (nor
// anyone sending for it).
func TestDrainEndsAfterLinger(t *testing.T) {
	b := startBroker(t, "", nil)
	c := b.connect(t, &paho.Connect{ClientID: "d7", CleanStart: true}, nil)
	for i := 0; i < 3; i++ {
		pub(t, c, &paho.Publish{Topic: "factory/s1/d7/telemetry", QoS: 1, Payload: []byte{byte(i)}})
	}
	var cn *conn
	b.srv.conns.Range(func(_, v any) bool { cn = v.(*conn); return false })
	if cn == nil {
		t.Fatal("no connection state")
	}
	running := func() bool {
		cn.mu.Lock()
		defer cn.mu.Unlock()
		return cn.running
	}
	waitFor(t, "the drain to end", func() bool { return !running() })
	pub(t, c, &paho.Publish{Topic: "factory/s1/d7/telemetry", QoS: 1, Payload: []byte("again")})
	waitFor(t, "the next drain to end", func() bool { return !running() })
}
