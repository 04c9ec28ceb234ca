package mqtt

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// BenchmarkQoS1Ingest measures the broker's side of QoS 1 ingest: devices
// connections each keep window publishes in flight, written as pre-encoded
// packets so the client costs little, and every PUBACK waits for the
// record's fsync (flush.policy=interval). Profile it with -cpuprofile.
//
//	go test -run '^$' -bench BenchmarkQoS1Ingest -benchtime 200000x ./ingest/mqtt
func BenchmarkQoS1Ingest(b *testing.B) {
	for _, devices := range []int{100} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) { benchQoS1(b, devices, 16) })
	}
}

// BenchmarkQoS1OneInFlight is BenchmarkQoS1Ingest with one publish in
// flight per connection (publish, wait for the PUBACK, publish the next),
// as most embedded clients do: nothing is shared between publishes of a
// connection, so the per-message cost of reading, appending, waiting for
// durability and acknowledging shows whole. It reports the process's CPU
// per message (user+system over the run; the client's share is small but
// included). The telemetry topic has 4 partitions (the tests' rule), and
// in the partitions=1 case one, as a node's default topic has: all the
// devices then share one group commit (group.go).
//
//	go test -run '^$' -bench BenchmarkQoS1OneInFlight -benchtime 20000x -cpuprofile cpu.prof ./ingest/mqtt
func BenchmarkQoS1OneInFlight(b *testing.B) {
	for _, devices := range []int{100} {
		b.Run(fmt.Sprintf("devices=%d", devices), func(b *testing.B) { benchQoS1(b, devices, 1) })
		b.Run(fmt.Sprintf("devices=%d,partitions=1", devices), func(b *testing.B) { benchQoS1Parts(b, devices, 1, 1) })
	}
}

func benchQoS1(b *testing.B, devices, window int) { benchQoS1Parts(b, devices, window, 0) }

// benchQoS1Parts is benchQoS1 with the telemetry topic's partition count
// (0: the tests' rule's).
func benchQoS1Parts(b *testing.B, devices, window int, partitions int32) {
	br := startBroker(b, "", func(o *Options) {
		if partitions > 0 {
			r := telemetryRule
			r.Partitions = partitions
			o.Rules = []Rule{r}
		}
	})
	payload := []byte(`{"device":"d0042","ts":1458031648545,"temperature":20.48,"humidity":42.332,"light1":185.71}`)
	var sent atomic.Int64
	var wg sync.WaitGroup
	conns := make([]net.Conn, devices)
	for d := range conns {
		rc := dialRaw(b, br.addr, 5)
		rc.connect(connectOpts{id: fmt.Sprintf("d%04d", d), clean: true})
		rc.c.SetReadDeadline(time.Time{}) // connect's
		conns[d] = rc.c
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for d, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("factory/s1/d%04d/telemetry", d)
			pkt := func(id uint16) []byte {
				return encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
					TopicName: topic, Payload: payload, PacketID: id}, (*packets.Packet).PublishEncode)
			}
			bufs := make([][]byte, window+1)
			for id := 1; id <= window; id++ {
				bufs[id] = pkt(uint16(id))
			}
			inflight := 0
			for id := 1; id <= window && sent.Add(1) <= int64(b.N); id++ {
				c.Write(bufs[id])
				inflight++
			}
			r := bufio.NewReader(c)
			ack := make([]byte, 4)
			for inflight > 0 {
				// PUBACK v5 with reason 0 and no properties: 4 bytes.
				if _, err := io.ReadFull(r, ack); err != nil {
					b.Error(err)
					return
				}
				inflight--
				id := int(ack[2])<<8 | int(ack[3])
				if sent.Add(1) <= int64(b.N) {
					c.Write(bufs[id])
					inflight++
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu := processCPU() - cpu0
	if got := br.count("telemetry"); got != int64(b.N) {
		b.Fatalf("%d records, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/msg")
}

// processCPU is this process's user + system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkQoS0Ingest: devices connections each write their share of b.N
// pre-encoded QoS 0 publishes as fast as the socket takes them, then a
// QoS 1 fence, whose PUBACK says the broker has handled everything before
// it; every publish is appended to the log (not waited for). Reports the
// process's CPU per message like BenchmarkQoS1OneInFlight.
//
//	go test -run '^$' -bench BenchmarkQoS0Ingest -benchtime 500000x -cpuprofile cpu.prof ./ingest/mqtt
func BenchmarkQoS0Ingest(b *testing.B) {
	const devices = 100
	br := startBroker(b, "", nil)
	payload := []byte(`{"device":"d0042","ts":1458031648545,"temperature":20.48,"humidity":42.332,"light1":185.71}`)
	conns := make([]net.Conn, devices)
	for d := range conns {
		rc := dialRaw(b, br.addr, 5)
		rc.connect(connectOpts{id: fmt.Sprintf("d%04d", d), clean: true})
		conns[d] = rc.c
	}
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	var wg sync.WaitGroup
	for d, c := range conns {
		n := b.N / devices
		if d < b.N%devices {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("factory/s1/d%04d/telemetry", d)
			pk := encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, ProtocolVersion: 5,
				TopicName: topic, Payload: payload}, (*packets.Packet).PublishEncode)
			w := bufio.NewWriterSize(c, 32<<10)
			for i := 0; i < n; i++ {
				w.Write(pk)
			}
			w.Write(encode(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 5,
				TopicName: fmt.Sprintf("factory/s1/d%04d/fence", d), Payload: []byte("{}"), PacketID: 1}, (*packets.Packet).PublishEncode))
			w.Flush()
			ack := make([]byte, 4)
			if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x40 {
				b.Errorf("fence: %x %v", ack, err)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	cpu := processCPU() - cpu0
	if got := br.count("telemetry"); got != int64(b.N) { // the fences went to the default topic
		b.Fatalf("%d records, want %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(cpu.Seconds()*1e6/float64(b.N), "cpu-µs/msg")
}
