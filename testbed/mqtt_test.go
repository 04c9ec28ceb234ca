package testbed

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"

	flog "ferry/log"
)

// requireTool returns the path of an external client, skipping the test
// when it is missing on a developer's machine and failing it under CI=true,
// where `make test` must have installed it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required under CI=true (make deps installs it): %v", name, err)
		}
		t.Skipf("%s not installed (make deps installs it)", name)
	}
	return path
}

// device is a paho.golang MQTT 5 client connected to addr.
func device(t *testing.T, addr, id string, clean bool) *paho.Client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, PacketTimeout: 30 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: clean, KeepAlive: 30}); err != nil {
		nc.Close()
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return c
}

// consumeAll reads a topic from the start up to its end offsets.
func consumeAll(t testing.TB, addr, topic string) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	remaining := 0
	for _, e := range endOffsets(t, cl, topic) {
		remaining += int(e)
	}
	var out []*kgo.Record
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d records, %d missing", len(out), remaining)
		}
		for _, r := range fs.Records() {
			out = append(out, r)
			remaining--
		}
	}
	return out
}

func recordHeader(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestMQTTFleetToKafka: 20 simulated devices publish 10,000 QoS 1 messages
// to a real `ferry edge`: paho.golang devices over MQTT 5, then Debian's
// mosquitto_pub over 3.1.1 and 5 (one process per device, a message per
// stdin line). A franz-go consumer reads the log topic over Kafka: every
// message is there once, in order per device, on the partition
// murmur2(device) picks, with its MQTT headers.
func TestMQTTFleetToKafka(t *testing.T) {
	for _, client := range []string{"paho", "mosquitto_pub"} {
		t.Run(client, func(t *testing.T) {
			var mpub string
			if client == "mosquitto_pub" {
				mpub = requireTool(t, "mosquitto_pub")
			}
			p := startEdge(t, t.TempDir(), "--mqtt-rule", "factory/+site/+device/telemetry -> telemetry key={device} partitions=4")
			const devices, each = 20, 500
			payload := func(id string, i int) string { return fmt.Sprintf(`{"device":%q,"seq":%d}`, id, i) }
			var wg sync.WaitGroup
			errs := make(chan error, devices)
			for d := 0; d < devices; d++ {
				id := fmt.Sprintf("dev%02d", d)
				topic := "factory/site" + id[3:] + "/" + id + "/telemetry"
				wg.Add(1)
				if client == "paho" {
					c := device(t, p.mqttAddr, id, true)
					go func() {
						defer wg.Done()
						ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
						defer cancel()
						for i := 0; i < each; i++ {
							if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(payload(id, i))}); err != nil {
								errs <- fmt.Errorf("%s publish %d: %w", id, i, err)
								return
							}
						}
					}()
					continue
				}
				version := []string{"mqttv311", "mqttv5"}[d%2]
				host, port, _ := net.SplitHostPort(p.mqttAddr)
				go func() {
					defer wg.Done()
					var lines strings.Builder
					for i := 0; i < each; i++ {
						lines.WriteString(payload(id, i) + "\n")
					}
					cmd := exec.Command(mpub, "-h", host, "-p", port, "-V", version, "-q", "1", "-i", id, "-t", topic, "-l")
					cmd.Stdin = strings.NewReader(lines.String())
					if out, err := cmd.CombinedOutput(); err != nil {
						errs <- fmt.Errorf("%s: mosquitto_pub: %v %s", id, err, out)
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			recs := consumeAll(t, p.kafkaAddr, "telemetry")
			if len(recs) != devices*each {
				t.Fatalf("%d records, want %d", len(recs), devices*each)
			}
			next := map[string]int{}
			for _, r := range recs {
				id := string(r.Key)
				if want := flog.PartitionForKey(r.Key, 4); r.Partition != want {
					t.Fatalf("%s on partition %d, murmur2 picks %d", id, r.Partition, want)
				}
				if string(r.Value) != payload(id, next[id]) {
					t.Fatalf("%s: got %s, want %s (lost, duplicated or reordered)", id, r.Value, payload(id, next[id]))
				}
				next[id]++
				if recordHeader(r, "mqtt.client_id") != id || recordHeader(r, "mqtt.qos") != "1" ||
					recordHeader(r, "mqtt.topic") != "factory/site"+id[3:]+"/"+id+"/telemetry" {
					t.Fatalf("headers %v", r.Headers)
				}
			}
			for d := 0; d < devices; d++ {
				if id := fmt.Sprintf("dev%02d", d); next[id] != each {
					t.Fatalf("%s: %d records, want %d", id, next[id], each)
				}
			}
		})
	}
}

// TestMosquittoClients drives the broker with Debian's mosquitto_pub and
// mosquitto_sub, MQTT 3.1.1 and 5: a subscriber receives the live
// publishes, and each publish is in the log once with its protocol's
// headers.
func TestMosquittoClients(t *testing.T) {
	mpub := requireTool(t, "mosquitto_pub")
	msub := requireTool(t, "mosquitto_sub")
	p := startEdge(t, t.TempDir())
	host, port, _ := net.SplitHostPort(p.mqttAddr)

	for _, v := range []string{"mqttv311", "mqttv5"} {
		t.Run(v, func(t *testing.T) {
			topic := "factory/lyon/" + v + "-dev/telemetry"
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			// -d prints the client's protocol events, SUBACK included,
			// so the publishes start once the subscription is in place.
			// stdbuf: mosquitto_sub's stdout is a pipe here, which libc
			// would buffer until exit.
			sub := exec.CommandContext(ctx, "stdbuf", "-oL", msub, "-h", host, "-p", port, "-V", v, "-q", "1", "-t", "factory/+/"+v+"-dev/#",
				"-C", "3", "-v", "-d", "-i", v+"-sub")
			stdout, err := sub.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := sub.Start(); err != nil {
				t.Fatal(err)
			}
			subscribed := make(chan struct{})
			var got strings.Builder
			scanned := make(chan struct{})
			go func() {
				defer close(scanned)
				sc := bufio.NewScanner(stdout)
				once := sync.Once{}
				for sc.Scan() {
					line := sc.Text()
					switch {
					case strings.Contains(line, "SUBACK"):
						once.Do(func() { close(subscribed) })
					case strings.HasPrefix(line, "factory/"):
						got.WriteString(line + "\n")
					}
				}
			}()
			select {
			case <-subscribed:
			case <-ctx.Done():
				t.Fatal("mosquitto_sub never got its SUBACK")
			}
			for i := 0; i < 3; i++ {
				out, err := exec.Command(mpub, "-h", host, "-p", port, "-V", v, "-q", "1", "-i", v+"-dev",
					"-t", topic, "-m", fmt.Sprintf(`{"n":%d}`, i)).CombinedOutput()
				if err != nil {
					t.Fatalf("mosquitto_pub: %v %s", err, out)
				}
			}
			<-scanned
			if err := sub.Wait(); err != nil {
				t.Fatalf("mosquitto_sub: %v", err)
			}
			want := fmt.Sprintf("%s {\"n\":0}\n%s {\"n\":1}\n%s {\"n\":2}\n", topic, topic, topic)
			if got.String() != want {
				t.Errorf("subscriber got %q, want %q", got.String(), want)
			}
		})
	}
	var got []string
	for _, r := range consumeAll(t, p.kafkaAddr, "telemetry") {
		got = append(got, fmt.Sprintf("%s %s %s q%s", r.Key, r.Value, recordHeader(r, "mqtt.client_id"), recordHeader(r, "mqtt.qos")))
	}
	want := []string{
		`mqttv311-dev {"n":0} mqttv311-dev q1`, `mqttv311-dev {"n":1} mqttv311-dev q1`, `mqttv311-dev {"n":2} mqttv311-dev q1`,
		`mqttv5-dev {"n":0} mqttv5-dev q1`, `mqttv5-dev {"n":1} mqttv5-dev q1`, `mqttv5-dev {"n":2} mqttv5-dev q1`,
	}
	if fmt.Sprint(sortedCopy(got)) != fmt.Sprint(want) {
		t.Errorf("log holds\n%v\nwant\n%v", got, want)
	}
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// TestMQTTQoS1SurvivesKill9: QoS 1 publishers load a real `ferry edge`,
// which is killed with SIGKILL mid-load and restarted on the same data
// directory; every message it PUBACKed is in the log. Three cycles.
func TestMQTTQoS1SurvivesKill9(t *testing.T) {
	dir := t.TempDir()
	acked := map[string]bool{}
	var mu sync.Mutex
	for cycle := 0; cycle < 3; cycle++ {
		p := startEdge(t, dir)
		killAt := 1500 + cycle*500
		n := 0
		var once sync.Once
		var wg sync.WaitGroup
		for d := 0; d < 8; d++ {
			id := fmt.Sprintf("c%d-dev%d", cycle, d)
			c := device(t, p.mqttAddr, id, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				defer cancel()
				for i := 0; ; i++ {
					v := fmt.Sprintf("%s-%d", id, i)
					if _, err := c.Publish(ctx, &paho.Publish{Topic: "factory/x/" + id + "/telemetry", QoS: 1, Payload: []byte(v)}); err != nil {
						return // the broker is gone: not acknowledged, no promise
					}
					mu.Lock()
					acked[v] = true
					n++
					if n >= killAt {
						once.Do(func() { p.cmd.Process.Signal(syscall.SIGKILL) })
					}
					mu.Unlock()
				}
			}()
		}
		<-p.exited
		wg.Wait()

		p2 := startEdge(t, dir)
		stored := map[string]int{}
		for _, r := range consumeAll(t, p2.kafkaAddr, "telemetry") {
			stored[string(r.Value)]++
		}
		mu.Lock()
		for v := range acked {
			if stored[v] == 0 {
				t.Fatalf("cycle %d: PUBACKed message %q missing after kill -9", cycle, v)
			}
		}
		mu.Unlock()
		p2.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-p2.exited; err != nil {
			t.Fatalf("clean shutdown after the check: %v", err)
		}
	}
	t.Logf("%d PUBACKed messages checked over 3 kill -9 cycles", len(acked))
}
