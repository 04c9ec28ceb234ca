package edge

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"ferry/devices"
	"ferry/ingest/mqtt"
	"ferry/mirror"
)

// scrapeAll reads the node's /metrics and returns every sample by its
// series as exposed: name{label="value",...}, labels sorted by name.
func scrapeAll(t *testing.T, n *Node) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestMetricsAfterAKnownWorkload runs a known workload through a node:
// records produced over Kafka to two partitions, offsets committed for a
// consumer group, MQTT publishes of every QoS from a registered device,
// one matching no rule and one its ACL refuses. /metrics then says
// exactly that: records in, lag = produced − committed, publishes by QoS
// and result, bytes per partition equal to the log's, one latency
// observation per produce request, the drops, the device online, and the
// mirror's backlog of everything (its center is unreachable).
func TestMetricsAfterAKnownWorkload(t *testing.T) {
	dir := t.TempDir()
	reg, err := devices.Open(filepath.Join(dir, devices.FileName), devices.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Add(devices.Device{ID: "dev1", Enabled: true, ACL: devices.ACL{Publish: []string{"factory/+/{device}/#"}}}, "pw1"); err != nil {
		t.Fatal(err)
	}
	reg.Close()
	n, err := Start(Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", MQTTAddr: "127.0.0.1:0",
		AuthMode: AuthRegistry, Logger: slog.New(slog.DiscardHandler),
		MQTT:     mqtt.Options{Rules: []mqtt.Rule{{Filter: "factory/+site/+device/telemetry", Topic: "telemetry", Key: "{device}"}}},
		MirrorTo: mirror.SenderOptions{Center: "127.0.0.1:1", EdgeID: "gw1", Token: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Kafka: 7 records to orders-0 and 3 to orders-1, one acks=all
	// request each; the group billing commits 5 and 3.
	if _, err := n.Log().CreateTopic("orders", 2, nil); err != nil {
		t.Fatal(err)
	}
	produced := map[int32]int64{0: 7, 1: 3}
	committed := map[int32]int64{0: 5, 1: 3}
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.DefaultProduceTopic("orders"), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for p, count := range produced {
		for i := int64(0); i < count; i++ {
			if err := cl.ProduceSync(ctx, &kgo.Record{Partition: p, Value: []byte("order")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
	offsets := kadm.Offsets{}
	for p, o := range committed {
		offsets.Add(kadm.Offset{Topic: "orders", Partition: p, At: o, LeaderEpoch: -1})
	}
	if resp, err := kadm.NewClient(cl).CommitOffsets(ctx, "billing", offsets); err != nil || resp.Error() != nil {
		t.Fatalf("commit: %v %v", err, resp.Error())
	}

	// A consumer reads orders-0 from offset 5: 2 records out.
	consumer, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"orders": {0: kgo.NewOffset().At(5)}}))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	for got := 0; got < 2; {
		fs := consumer.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		got += len(fs.Records())
	}

	// MQTT 5: QoS 0 ×2, QoS 1 ×3, QoS 2 ×1 stored; a QoS 1 publish no rule
	// matches (no default topic: dropped, acknowledged); a QoS 0 publish
	// to another device's topic (refused by the ACL, not told: dropped).
	// QoS 0 publishes have no answer: each is followed by a QoS 1 one on
	// the same connection, whose PUBACK comes after the QoS 0 was handled.
	c, _, err := mqttConnect(t, n.MQTTAddrs()[0], &paho.Connect{ClientID: "dev1", Username: "dev1", UsernameFlag: true,
		Password: []byte("pw1"), PasswordFlag: true, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	// Left connected until the node has closed: a client disconnecting
	// while mochi closes its listener can deadlock it (mochi-mqtt/server
	// issue 488, GetByListener takes its read lock twice).
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	const own = "factory/lyon/dev1/telemetry"
	for _, p := range []struct {
		topic string
		qos   byte
	}{{own, 0}, {own, 1}, {own, 0}, {own, 1}, {own, 2}, {"factory/lyon/dev2/telemetry", 0}, {own, 1}, {"factory/lyon/dev1/status", 1}} {
		if _, err := c.Publish(ctx, &paho.Publish{Topic: p.topic, QoS: p.qos, Payload: []byte("21.5")}); err != nil {
			t.Fatalf("publish %s QoS %d: %v", p.topic, p.qos, err)
		}
	}

	m := scrapeAll(t, n)
	want := map[string]float64{
		// Records in, and lag = produced − committed.
		`ferry_log_end_offset{partition="0",topic="orders"}`:                                        7,
		`ferry_log_end_offset{partition="1",topic="orders"}`:                                        3,
		`ferry_log_end_offset{partition="0",topic="telemetry"}`:                                     6,
		`ferry_kafka_consumer_group_committed_offset{group="billing",partition="0",topic="orders"}`: 5,
		`ferry_kafka_consumer_group_committed_offset{group="billing",partition="1",topic="orders"}`: 3,
		`ferry_kafka_consumer_group_lag{group="billing",partition="0",topic="orders"}`:              2,
		`ferry_kafka_consumer_group_lag{group="billing",partition="1",topic="orders"}`:              0,
		`ferry_kafka_consumer_group_members{group="billing"}`:                                       0,
		// One latency observation per produce request.
		`ferry_kafka_fetched_records_total`:                           2,
		`ferry_kafka_requests_total{api="Produce"}`:                   10,
		`ferry_kafka_produce_duration_seconds_count{acks="all"}`:      10,
		`ferry_kafka_produce_duration_seconds_count{acks="1"}`:        0,
		`ferry_mqtt_publishes_total{qos="0",result="stored"}`:         2,
		`ferry_mqtt_publishes_total{qos="1",result="stored"}`:         3,
		`ferry_mqtt_publishes_total{qos="2",result="stored"}`:         1,
		`ferry_mqtt_publishes_total{qos="1",result="unmatched"}`:      1,
		`ferry_mqtt_publishes_total{qos="0",result="not_authorized"}`: 1,
		`ferry_mqtt_ack_wait_seconds_count`:                           5, // every QoS 1/2 publish acknowledged
		`ferry_mqtt_connections`:                                      1,
		`ferry_devices_registered`:                                    1,
		`ferry_devices_online`:                                        1,
		// Dropped by a policy: the unmatched and the refused publish.
		`ferry_records_dropped_total{reason="disk_budget"}`:         0,
		`ferry_records_dropped_total{reason="mqtt_unmatched"}`:      1,
		`ferry_records_dropped_total{reason="mqtt_not_authorized"}`: 1,
		`ferry_records_dropped_total{reason="mqtt_rate_limited"}`:   0,
		`ferry_records_dropped_total{reason="mqtt_not_stored"}`:     0,
		`ferry_under_replicated_partitions`:                         0,
		`ferry_mirror_link_up`:                                      0,
	}
	for series, w := range want {
		if got, ok := m[series]; !ok || got != w {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, w)
		}
	}

	// Disk bytes per partition are the log's, and add up to the total;
	// the mirror's backlog (nothing acknowledged) is all of it.
	var total float64
	for _, topic := range []string{"orders", "telemetry"} {
		for p := int32(0); ; p++ {
			part, err := n.Log().Partition(topic, p)
			if err != nil {
				break
			}
			labels := `{partition="` + strconv.Itoa(int(p)) + `",topic="` + topic + `"}`
			if got := m["ferry_log_partition_bytes"+labels]; got != float64(part.Size()) {
				t.Errorf("ferry_log_partition_bytes%s = %v, the partition has %d", labels, got, part.Size())
			}
			if got := m["ferry_mirror_backlog_bytes"+labels]; got != float64(part.Size()) {
				t.Errorf("ferry_mirror_backlog_bytes%s = %v, want all %d bytes", labels, got, part.Size())
			}
			if age, ok := m["ferry_mirror_oldest_unshipped_age_seconds"+labels]; !ok || (part.EndOffset() > 0) != (age > 0) {
				t.Errorf("ferry_mirror_oldest_unshipped_age_seconds%s = %v (present %v) with %d records unshipped", labels, age, ok, part.EndOffset())
			}
			total += float64(part.Size())
		}
	}
	if got := m["ferry_log_disk_bytes"]; got != total || total == 0 {
		t.Errorf("ferry_log_disk_bytes = %v, partitions add up to %v", got, total)
	}
	if _, ok := m["ferry_mirror_compression_ratio"]; ok {
		t.Error("a compression ratio before anything was sent")
	}
	// Every record was made durable by some fsync.
	if fs := m["ferry_log_fsync_duration_seconds_count"]; fs < 1 {
		t.Errorf("ferry_log_fsync_duration_seconds_count = %v after acks=all produces", fs)
	}
	// Bytes in and out per listener and API.
	for _, series := range []string{`ferry_kafka_received_bytes_total{api="Produce"}`, `ferry_kafka_sent_bytes_total{api="Produce"}`,
		`ferry_mqtt_received_bytes_total`, `ferry_mqtt_sent_bytes_total`} {
		if m[series] <= 0 {
			t.Errorf("%s = %v after traffic", series, m[series])
		}
	}
	// The admin listener counted the scrape above.
	m = scrapeAll(t, n)
	if got := m[`ferry_admin_requests_total{code="200",route="GET /metrics"}`]; got != 1 {
		t.Errorf(`ferry_admin_requests_total{code="200",route="GET /metrics"} = %v after one scrape`, got)
	}
	if got := m[`ferry_admin_sent_bytes_total{route="GET /metrics"}`]; got <= 0 {
		t.Errorf("ferry_admin_sent_bytes_total for /metrics = %v", got)
	}
}

// metricsPage is the page whose Metrics table lists every metric.
const metricsPage = "../docs/monitoring.md"

// Every metric ferry defines (a "ferry_…" name in a non-test Go file) has
// a row in the Metrics table of docs/monitoring.md, and every metric a row
// names is one ferry defines.
func TestEveryMetricIsDocumented(t *testing.T) {
	page, err := os.ReadFile(metricsPage)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(page), "\n") {
		if cells := strings.Split(line, "|"); len(cells) > 2 && strings.HasPrefix(line, "| `ferry_") {
			for _, m := range regexp.MustCompile("`(ferry_[a-z_]+)`").FindAllStringSubmatch(cells[1], -1) {
				documented[m[1]] = true
			}
		}
	}
	name := regexp.MustCompile(`"(ferry_[a-z_]+)"`)
	found := 0
	defined := map[string]bool{}
	err = filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") && path != "..") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllStringSubmatch(string(src), -1) {
			found++
			defined[m[1]] = true
			if !documented[m[1]] {
				t.Errorf("%s: metric %s has no row in the Metrics table of %s", path, m[1], metricsPage)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 40 {
		t.Fatalf("found only %d metric names in the sources", found)
	}
	for m := range documented {
		if !defined[m] {
			t.Errorf("%s: a row for %s, which no source defines", metricsPage, m)
		}
	}
}
