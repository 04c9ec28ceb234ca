package testbed

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkMQTTIngestLight is BenchmarkMQTTIngest's QoS 1 case with a
// client that costs next to nothing: each device is a raw connection
// (mochi's packets package encodes its CONNECT and its publishes once, up
// front) that keeps mqttBenchWindow publishes in flight and re-sends a
// packet id as soon as its PUBACK arrives. paho spends more CPU than
// either broker, so with it both brokers wait on the client; this measures
// the brokers. Same payloads, window and brokers as BenchmarkMQTTIngest.
//
//	go test -run '^$' -bench BenchmarkMQTTIngestLight -benchtime=1x ./testbed
func BenchmarkMQTTIngestLight(b *testing.B) {
	mosq := mosquittoBinary(b)
	raiseNofile(b)
	rows := roomClimateRows(b)
	dur := time.Duration(envInt("MQTT_BENCH_SECONDS", 6)) * time.Second
	for _, n := range []int{100, 1000} {
		for _, broker := range []string{"ferry", "mosquitto"} {
			b.Run(fmt.Sprintf("qos=1/devices=%d/broker=%s", n, broker), func(b *testing.B) {
				logLoad(b)
				addr, pid, fp := startBenchBroker(b, broker, mosq)
				acked := make([]atomic.Int64, n)
				var stop atomic.Bool
				var wg sync.WaitGroup
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				conns := make([]*idleClient, n)
				for d := range conns {
					c, err := dialIdle(ctx, addr, deviceID(d), 60)
					if err != nil {
						b.Fatal(err)
					}
					defer c.c.Close()
					conns[d] = c
				}
				cpu0, start := procCPU(b, pid), time.Now()
				for d, c := range conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						payloads := sensorPayloads(rows, deviceID(d), d, mqttBenchWindow)
						pkts := make([][]byte, mqttBenchWindow+1)
						for id := 1; id <= mqttBenchWindow; id++ {
							var buf bytes.Buffer
							pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
								TopicName: "factory/s1/" + deviceID(d) + "/telemetry", Payload: payloads[id-1], PacketID: uint16(id)}
							if err := pk.PublishEncode(&buf); err != nil {
								b.Error(err)
								return
							}
							pkts[id] = buf.Bytes()
						}
						w := bufio.NewWriter(c.c)
						for id := 1; id <= mqttBenchWindow; id++ {
							w.Write(pkts[id])
						}
						w.Flush()
						r := bufio.NewReader(c.c)
						inflight := mqttBenchWindow
						ack := make([]byte, 4) // PUBACK: 0x40 0x02 and the packet id
						for inflight > 0 {
							c.c.SetReadDeadline(time.Now().Add(30 * time.Second))
							if _, err := io.ReadFull(r, ack); err != nil {
								b.Errorf("%s: %v", deviceID(d), err)
								return
							}
							if ack[0] != 0x40 {
								b.Errorf("%s: got %x, want a PUBACK", deviceID(d), ack)
								return
							}
							inflight--
							acked[d].Add(1)
							if !stop.Load() {
								id := int(ack[2])<<8 | int(ack[3])
								// Write everything acknowledged so far at once.
								w.Write(pkts[id])
								inflight++
								if r.Buffered() < 4 {
									w.Flush()
								}
							} else {
								w.Flush()
							}
						}
					}()
				}
				time.Sleep(dur) // the measurement window: load runs meanwhile
				stop.Store(true)
				wg.Wait()
				elapsed, cpu := time.Since(start), procCPU(b, pid)-cpu0
				var total int64
				for d := range acked {
					total += acked[d].Load()
				}
				rate := float64(total) / elapsed.Seconds()
				b.ReportMetric(rate, "msgs/s")
				b.ReportMetric(1e6*cpu/float64(total), "broker-cpu-µs/msg")
				b.ReportMetric(100*cpu/elapsed.Seconds(), "broker-cpu-%")
				b.Logf("%s: %d devices: %d PUBACKs in %.2fs = %.0f msgs/s; broker CPU %.2fs (%.1f µs/msg)",
					broker, n, total, elapsed.Seconds(), rate, cpu, 1e6*cpu/float64(total))
				if fp == nil {
					return
				}
				got := logRecordsByKey(b, fp.kafkaAddr, "telemetry")
				for d := range acked {
					if id := deviceID(d); got[id] < acked[d].Load() {
						b.Errorf("%s: %d records in the log, %d PUBACKed", id, got[id], acked[d].Load())
					}
				}
			})
		}
	}
}

// BenchmarkMQTTOneInFlight is the shape of most embedded clients: each
// device is an MQTT 5 connection that publishes QoS 1, waits for the
// PUBACK, then publishes the next (one message in flight), with the
// room-climate payloads of the other MQTT benchmarks (about 100 bytes) to
// factory/s1/<device>/telemetry. ferry runs on its defaults (the default
// rule into topic telemetry, flush.policy=interval): a PUBACK leaves only
// once the record is fsynced. mosquitto stores nothing (a PUBACK means
// "received"). The clients are raw connections with pre-encoded packets,
// as in BenchmarkMQTTIngestLight, so the brokers get the CPU.
//
// Reported: msgs/s (PUBACKs over the load time), the broker's CPU-seconds
// per million messages (user+system from /proc/PID/stat across the load;
// numerically µs per message), its CPU share, and the mean time from a
// publish's write to its PUBACK. For ferry the log is read back: every
// PUBACKed publish must be in it.
//
// MQTT_BENCH_FLUSH=never (or always) creates ferry's telemetry topic with
// that flush.policy before the node starts: what the fsync costs, for
// comparison only (under never a PUBACK is not a durable acknowledgement).
//
//	go test -run '^$' -bench BenchmarkMQTTOneInFlight -benchtime=1x ./testbed
func BenchmarkMQTTOneInFlight(b *testing.B) {
	mosq := mosquittoBinary(b)
	flush := os.Getenv("MQTT_BENCH_FLUSH")
	raiseNofile(b)
	rows := roomClimateRows(b)
	dur := time.Duration(envInt("MQTT_BENCH_SECONDS", 6)) * time.Second
	for _, n := range []int{100, 1000} {
		for _, broker := range []string{"ferry", "mosquitto"} {
			b.Run(fmt.Sprintf("devices=%d/broker=%s", n, broker), func(b *testing.B) {
				logLoad(b)
				addr, pid, fp := startOneInFlightBroker(b, broker, mosq, flush)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				conns := make([]*idleClient, n)
				for d := range conns {
					c, err := dialRawMQTT(ctx, addr, deviceID(d), 60, 5)
					if err != nil {
						b.Fatal(err)
					}
					defer c.c.Close()
					conns[d] = c
				}
				const distinct = 16 // packets per device, cycled: ids 1..16
				acked := make([]atomic.Int64, n)
				rtt := make([]time.Duration, n)
				var stop atomic.Bool
				var wg sync.WaitGroup
				cpu0, start := procCPU(b, pid), time.Now()
				for d, c := range conns {
					wg.Add(1)
					go func() {
						defer wg.Done()
						payloads := sensorPayloads(rows, deviceID(d), d, distinct)
						pkts := make([][]byte, distinct)
						for i := range pkts {
							var buf bytes.Buffer
							pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
								TopicName: "factory/s1/" + deviceID(d) + "/telemetry", Payload: payloads[i], PacketID: uint16(i + 1)}
							if err := pk.PublishEncode(&buf); err != nil {
								b.Error(err)
								return
							}
							pkts[i] = buf.Bytes()
						}
						r := bufio.NewReader(c.c)
						for i := 0; !stop.Load(); i++ {
							t0 := time.Now()
							c.c.SetDeadline(t0.Add(30 * time.Second))
							if _, err := c.c.Write(pkts[i%distinct]); err != nil {
								b.Errorf("%s: %v", deviceID(d), err)
								return
							}
							if err := readPuback(r, uint16(i%distinct+1)); err != nil {
								b.Errorf("%s: %v", deviceID(d), err)
								return
							}
							rtt[d] += time.Since(t0)
							acked[d].Add(1)
						}
					}()
				}
				time.Sleep(dur) // the measurement window: load runs meanwhile
				stop.Store(true)
				wg.Wait()
				elapsed, cpu := time.Since(start), procCPU(b, pid)-cpu0
				var total int64
				var wait time.Duration
				for d := range acked {
					total += acked[d].Load()
					wait += rtt[d]
				}
				if total == 0 {
					b.Fatal("no publish acknowledged")
				}
				rate := float64(total) / elapsed.Seconds()
				b.ReportMetric(rate, "msgs/s")
				b.ReportMetric(1e6*cpu/float64(total), "broker-cpu-s/Mmsg")
				b.ReportMetric(100*cpu/elapsed.Seconds(), "broker-cpu-%")
				b.ReportMetric(float64(wait.Microseconds())/1e3/float64(total), "puback-ms")
				b.Logf("%s: %d devices, one QoS 1 publish in flight each: %d PUBACKs in %.2fs = %.0f msgs/s; broker CPU %.2fs = %.1f s per million messages; mean publish→PUBACK %.2f ms",
					broker, n, total, elapsed.Seconds(), rate, cpu, 1e6*cpu/float64(total), float64(wait.Microseconds())/1e3/float64(total))
				if fp == nil {
					return
				}
				got := logRecordsByKey(b, fp.kafkaAddr, "telemetry")
				for d := range acked {
					if id := deviceID(d); got[id] < acked[d].Load() {
						b.Errorf("%s: %d records in the log, %d PUBACKed", id, got[id], acked[d].Load())
					}
				}
			})
		}
	}
}

// readPuback reads one packet and checks it is a successful PUBACK for id
// (MQTT 5: reason and properties may be left out when 0 and empty; a
// reason below 0x80 is a success, and mosquitto says 0x10, "no matching
// subscribers").
func readPuback(r *bufio.Reader, id uint16) error {
	h, err := r.ReadByte()
	if err != nil {
		return err
	}
	n, _, err := packets.DecodeLength(r)
	if err != nil {
		return err
	}
	if n < 2 || n > 64 {
		return fmt.Errorf("packet %#x of %d bytes, want a PUBACK", h, n)
	}
	var body [64]byte
	if _, err := io.ReadFull(r, body[:n]); err != nil {
		return err
	}
	switch got := uint16(body[0])<<8 | uint16(body[1]); {
	case h != 0x40:
		return fmt.Errorf("packet %#x, want a PUBACK", h)
	case got != id:
		return fmt.Errorf("PUBACK for %d, want %d", got, id)
	case n > 2 && body[2] >= 0x80:
		return fmt.Errorf("PUBACK reason %#x", body[2])
	}
	return nil
}

// startOneInFlightBroker is startBenchBroker, ferry's telemetry topic
// created first with flush.policy=flush when flush is set.
func startOneInFlightBroker(b *testing.B, broker, mosq, flush string) (string, int, *ferryProc) {
	if broker != "ferry" || flush == "" {
		return startBenchBroker(b, broker, mosq)
	}
	dir := b.TempDir()
	if out, err := exec.Command(ferryBinary(b), "topics", "create", "telemetry", "--partitions", "1",
		"--config", "flush.policy="+flush, "--data-dir", dir, "--create-data-dir").CombinedOutput(); err != nil {
		b.Fatalf("topics create: %v\n%s", err, out)
	}
	b.Logf("ferry's telemetry topic: flush.policy=%s", flush)
	fp := startEdge(b, dir)
	return fp.mqttAddr, fp.cmd.Process.Pid, fp
}
