package testbed

// MQTT benchmarks: a real `ferry edge` against Debian's mosquitto, started
// by the benchmark in the same run, driven by the same client code.
//
//	go test -run '^$' -bench 'BenchmarkMQTTIngest' -benchtime=1x ./testbed
//	go test -run '^$' -bench 'BenchmarkMQTTIdleMemory' -benchtime=1x ./testbed
//
// MQTT_BENCH_SECONDS sets the load time of each ingest case (default 6),
// MQTT_BENCH_IDLE the number of idle devices (default 10000). Results and
// how to read them: BENCHMARKS.md, "MQTT ingest".

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kgo"
)

// mqttBenchWindow is how many QoS 1 publishes each device keeps in flight
// (that many goroutines call Publish on its one connection), for both
// brokers (MQTT_BENCH_WINDOW overrides it). QoS 0 devices publish from one
// goroutine each.
var mqttBenchWindow = envInt("MQTT_BENCH_WINDOW", 16)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkMQTTIngest: N devices, each its own MQTT 5 connection (paho.golang),
// publish room-climate JSON of about 100 bytes to
// factory/s1/<device>/telemetry for MQTT_BENCH_SECONDS at QoS 0 or 1, to
// ferry (the default rule stores them in the telemetry topic keyed by
// device) and to mosquitto (no subscribers). msgs/s counts:
//   - QoS 1: PUBACKed publishes over the time from the first publish to the
//     last PUBACK; ferry sends a PUBACK once the record is fsynced
//     (flush.policy=interval: the 10 ms group commit);
//   - QoS 0: publishes written over the time from the first publish until
//     every device's final QoS 1 "fence" publish is acknowledged, which a
//     broker does only after it has handled everything sent before it on
//     that connection.
//
// For ferry the log is then read back over Kafka (franz-go): each device's
// record count must equal what it published (QoS 0) or had acknowledged
// (QoS 1).
func BenchmarkMQTTIngest(b *testing.B) {
	mosq := mosquittoBinary(b)
	raiseNofile(b)
	rows := roomClimateRows(b)
	dur := time.Duration(envInt("MQTT_BENCH_SECONDS", 6)) * time.Second
	for _, qos := range []byte{0, 1} {
		for _, n := range []int{100, 1000} {
			for _, broker := range []string{"ferry", "mosquitto"} {
				b.Run(fmt.Sprintf("qos=%d/devices=%d/broker=%s", qos, n, broker), func(b *testing.B) {
					logLoad(b)
					addr, pid, fp := startBenchBroker(b, broker, mosq)
					r := runIngest(b, addr, pid, rows, n, qos, dur)
					b.ReportMetric(r.rate(), "msgs/s")
					b.ReportMetric(float64(r.payloadBytes)/float64(r.msgs), "B/payload")
					b.ReportMetric(100*r.brokerCPU/r.elapsed.Seconds(), "broker-cpu-%")
					b.ReportMetric(100*r.clientCPU/r.elapsed.Seconds(), "client-cpu-%")
					b.ReportMetric(float64(r.brokerRSS)/(1<<20), "broker-rss-MiB")
					b.Logf("%s: %d devices, QoS %d: %d msgs in %.2fs = %.0f msgs/s; broker CPU %.2fs, client CPU %.2fs, broker RSS %.1f MiB",
						broker, n, qos, r.msgs, r.elapsed.Seconds(), r.rate(), r.brokerCPU, r.clientCPU, float64(r.brokerRSS)/(1<<20))
					if fp == nil {
						return
					}
					m := ferryMetrics(b, fp.adminAddr, "ferry_mqtt_ack_wait_seconds_sum", "ferry_mqtt_ack_wait_seconds_count")
					if cnt := m["ferry_mqtt_ack_wait_seconds_count"]; cnt > 0 {
						ms := 1000 * m["ferry_mqtt_ack_wait_seconds_sum"] / cnt
						b.ReportMetric(ms, "ack-wait-ms")
						b.Logf("ferry: %.0f PUBACKs waited %.2f ms on average for their record to be durable", cnt, ms)
					}
					got := logRecordsByKey(b, fp.kafkaAddr, "telemetry")
					var stored int64
					for d, want := range r.perDevice {
						id := deviceID(d)
						if got[id] != want {
							b.Errorf("%s: %d records in the log, %d published and acknowledged", id, got[id], want)
						}
						stored += got[id]
					}
					b.ReportMetric(float64(stored), "records-in-log")
					b.Logf("ferry: the telemetry topic holds %d records, %d published: every one is there once", stored, r.msgs)
				})
			}
		}
	}
}

// logLoad records the machine's load average: other work on a shared
// machine shows in the figures.
func logLoad(b *testing.B) {
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		b.Logf("load average before the run: %s", strings.TrimSpace(string(la)))
	}
}

func deviceID(d int) string { return fmt.Sprintf("d%04d", d) }

type ingestResult struct {
	msgs         int64
	payloadBytes int64
	elapsed      time.Duration
	perDevice    []int64
	brokerCPU    float64 // seconds, user + system, during the load
	clientCPU    float64 // seconds, this process
	brokerRSS    int64   // at the end of the load
}

func (r ingestResult) rate() float64 { return float64(r.msgs) / r.elapsed.Seconds() }

// runIngest connects devices paho.golang clients to addr and has each
// publish for dur; see BenchmarkMQTTIngest for what is counted.
func runIngest(b *testing.B, addr string, pid int, rows []climateRow, devices int, qos byte, dur time.Duration) ingestResult {
	clients := connectDevices(b, addr, devices)
	workers := 1
	if qos == 1 {
		workers = mqttBenchWindow
	}
	payloads := make([][][]byte, devices)
	for d := range payloads {
		payloads[d] = sensorPayloads(rows, deviceID(d), d, 64)
	}
	counts := make([]atomic.Int64, devices)
	var total, bytesOut atomic.Int64
	var stop atomic.Bool
	var errMu sync.Mutex
	var firstErr error
	nErr := 0
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		nErr++
		errMu.Unlock()
	}

	cpu0, ccpu0 := procCPU(b, pid), selfCPU()
	start := time.Now()
	progressDone := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		last, lastT := int64(0), start
		for {
			select {
			case <-progressDone:
				return
			case now := <-t.C:
				n := total.Load()
				fmt.Fprintf(os.Stderr, "  %s %5.1fs %10d msgs %9.0f msgs/s\n", b.Name(), now.Sub(start).Seconds(), n,
					float64(n-last)/now.Sub(lastT).Seconds())
				last, lastT = n, now
			}
		}
	}()
	var wg sync.WaitGroup
	for d, c := range clients {
		topic := "factory/s1/" + deviceID(d) + "/telemetry"
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				pl := payloads[d]
				for i := w; !stop.Load(); i += workers {
					p := pl[i%len(pl)]
					if _, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: p}); err != nil {
						fail(fmt.Errorf("%s: publish: %w", deviceID(d), err))
						return
					}
					counts[d].Add(1)
					total.Add(1)
					bytesOut.Add(int64(len(p)))
				}
				if qos == 0 {
					// The fence: acknowledged once the broker has handled
					// every publish before it on this connection.
					fctx, cancel := context.WithTimeout(ctx, 60*time.Second)
					defer cancel()
					if _, err := c.Publish(fctx, &paho.Publish{Topic: "factory/s1/" + deviceID(d) + "/fence", QoS: 1, Payload: []byte("{}")}); err != nil {
						fail(fmt.Errorf("%s: fence: %w", deviceID(d), err))
					}
				}
			}()
		}
	}
	time.Sleep(dur)
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(start)
	close(progressDone)
	r := ingestResult{msgs: total.Load(), payloadBytes: bytesOut.Load(), elapsed: elapsed,
		brokerCPU: procCPU(b, pid) - cpu0, clientCPU: selfCPU() - ccpu0, brokerRSS: rssBytes(b, pid)}
	if firstErr != nil {
		b.Fatalf("%d publishes failed; first: %v", nErr, firstErr)
	}
	for d := range counts {
		r.perDevice = append(r.perDevice, counts[d].Load())
	}
	return r
}

// connectDevices connects n paho.golang MQTT 5 clients (clean start,
// keepalive 60 s), 32 at a time; they disconnect when the benchmark ends.
func connectDevices(b *testing.B, addr string, n int) []*paho.Client {
	clients := make([]*paho.Client, n)
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	t0 := time.Now()
	for d := range clients {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := dialPaho(addr, deviceID(d))
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			clients[d] = c
		}()
	}
	wg.Wait()
	b.Cleanup(func() {
		var wg sync.WaitGroup
		for _, c := range clients {
			if c != nil {
				wg.Add(1)
				go func() { defer wg.Done(); c.Disconnect(&paho.Disconnect{}) }()
			}
		}
		wg.Wait()
	})
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.Logf("%d devices connected in %v", n, time.Since(t0).Round(time.Millisecond))
	return clients
}

func dialPaho(addr, id string) (*paho.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	c := paho.NewClient(paho.ClientConfig{Conn: nc, PacketTimeout: 60 * time.Second})
	if _, err := c.Connect(ctx, &paho.Connect{ClientID: id, CleanStart: true, KeepAlive: 60}); err != nil {
		nc.Close()
		return nil, fmt.Errorf("connect %s: %w", id, err)
	}
	return c, nil
}

// procCPU is a process's user + system CPU time in seconds
// (/proc/PID/stat; clock ticks of 1/100 s).
func procCPU(tb testing.TB, pid int) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// After "(comm) ", field 3 (state) is f[0]; utime and stime are
	// fields 14 and 15.
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// selfCPU is this process's user + system CPU time in seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// logRecordsByKey reads a topic of ferry's log over Kafka from the start
// to its end offsets and counts its records by key.
func logRecordsByKey(tb testing.TB, addr, topic string) map[string]int64 {
	tb.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	if err != nil {
		tb.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	remaining := sumEnds(endOffsets(tb, cl, topic))
	out := map[string]int64{}
	read := int64(0)
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			tb.Fatalf("read %d records of %s, %d missing", read, topic, remaining)
		}
		fs.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) {
				tb.Fatalf("fetch %s/%d: %v", t, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			out[string(r.Key)]++
			read++
			remaining--
		})
	}
	return out
}

// BenchmarkMQTTIdleMemory: MQTT_BENCH_IDLE (10,000) devices connect with
// MQTT 3.1.1, keepalive 60 s, and then stay idle; the broker's resident
// memory (VmRSS) is reported before they connect and after they have been
// idle for 10 s, and its CPU time over the 5 s after that (%CPU-idle, of
// one core). The clients are raw TCP connections speaking CONNECT,
// CONNACK and PINGREQ (mochi's packets package), so this process stays
// light.
func BenchmarkMQTTIdleMemory(b *testing.B) {
	mosq := mosquittoBinary(b)
	n := envInt("MQTT_BENCH_IDLE", 10000)
	if lim := raiseNofile(b); lim < uint64(n)+256 {
		b.Skipf("open-files limit %d: %d idle connections need %d (raise the hard limit: ulimit -Hn)", lim, n, n+256)
	}
	for _, broker := range []string{"ferry", "mosquitto"} {
		b.Run("broker="+broker, func(b *testing.B) {
			logLoad(b)
			addr, pid, fp := startBenchBroker(b, broker, mosq)
			time.Sleep(time.Second)
			rss0 := rssBytes(b, pid)

			conns := make([]*idleClient, n)
			var connected atomic.Int64
			var errMu sync.Mutex
			var firstErr error
			sem := make(chan struct{}, 64)
			var wg sync.WaitGroup
			t0 := time.Now()
			tick := time.NewTicker(time.Second)
			tickDone := make(chan struct{})
			go func() {
				for {
					select {
					case <-tickDone:
						return
					case <-tick.C:
						fmt.Fprintf(os.Stderr, "  %s %5.1fs %6d connected, broker RSS %.1f MiB\n", b.Name(),
							time.Since(t0).Seconds(), connected.Load(), float64(rssBytes(b, pid))/(1<<20))
					}
				}
			}()
			for i := range conns {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					defer cancel()
					c, err := dialIdle(ctx, addr, fmt.Sprintf("idle%05d", i), 60)
					if err != nil {
						errMu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						errMu.Unlock()
						return
					}
					conns[i] = c
					connected.Add(1)
				}()
			}
			wg.Wait()
			connectTime := time.Since(t0)
			b.Cleanup(func() {
				for _, c := range conns {
					if c != nil {
						c.c.Close()
					}
				}
			})
			if firstErr != nil {
				tick.Stop()
				close(tickDone)
				b.Fatalf("%d of %d connected; first error: %v", connected.Load(), n, firstErr)
			}
			b.Logf("%s: %d idle devices connected in %v (%.0f connects/s)", broker, n, connectTime.Round(time.Millisecond),
				float64(n)/connectTime.Seconds())
			// Keep them alive should connecting have taken long: a
			// PINGREQ every 30 s (keepalive 60 s).
			pingDone := make(chan struct{})
			go func() {
				t := time.NewTicker(30 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-pingDone:
						return
					case <-t.C:
						for _, c := range conns {
							c.ping()
						}
					}
				}
			}()
			defer close(pingDone)
			rssConnected := rssBytes(b, pid)
			time.Sleep(10 * time.Second)
			tick.Stop()
			close(tickDone)
			rss := rssBytes(b, pid)
			// CPU while idle: the next 5 s, once what follows a burst of
			// connects (ferry's memory release) is over.
			cpu0 := procCPU(b, pid)
			time.Sleep(5 * time.Second)
			idleCPU := (procCPU(b, pid) - cpu0) / 5 // of one core
			b.ReportMetric(float64(rss0)/(1<<20), "MiB-rss-empty")
			b.ReportMetric(float64(rssConnected)/(1<<20), "MiB-rss-connected")
			b.ReportMetric(float64(rss)/(1<<20), "MiB-rss-idle10s")
			b.ReportMetric(float64(rss-rss0)/float64(n)/1024, "KiB/device")
			b.ReportMetric(float64(n)/connectTime.Seconds(), "connects/s")
			b.ReportMetric(100*idleCPU, "%CPU-idle")
			b.Logf("%s: RSS %.1f MiB empty, %.1f MiB with %d devices just connected, %.1f MiB after 10 s idle (%.1f KiB per device); %.2f%% of a core while idle",
				broker, float64(rss0)/(1<<20), float64(rssConnected)/(1<<20), n, float64(rss)/(1<<20), float64(rss-rss0)/float64(n)/1024, 100*idleCPU)
			if fp != nil {
				m := ferryMetrics(b, fp.adminAddr, "go_memstats_", "go_goroutines", "ferry_mqtt_connections", "process_resident_memory_bytes")
				for _, k := range []string{"go_memstats_heap_inuse_bytes", "go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes",
					"go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes", "go_memstats_next_gc_bytes"} {
					b.Logf("ferry: %-34s %8.1f MiB", k, m[k]/(1<<20))
				}
				b.Logf("ferry: go_goroutines %.0f (%.2f per device), ferry_mqtt_connections %.0f",
					m["go_goroutines"], m["go_goroutines"]/float64(n), m["ferry_mqtt_connections"])
				b.ReportMetric(m["go_memstats_heap_inuse_bytes"]/(1<<20), "MiB-heap-inuse")
				b.ReportMetric(m["go_memstats_stack_inuse_bytes"]/(1<<20), "MiB-stacks")
				b.ReportMetric(m["go_goroutines"], "goroutines")
			}
		})
	}
}
