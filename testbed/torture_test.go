package testbed

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// The torture suite: the faults an operator meets, each checked by counting
// every acknowledged record. `make test` runs it at a reduced size;
// `make torture` sets FERRY_TORTURE=full for the full one.

// tortureSize is reduced, or full under FERRY_TORTURE=full.
func tortureSize[T any](reduced, full T) T {
	if os.Getenv("FERRY_TORTURE") == "full" {
		return full
	}
	return reduced
}

// TestTortureKill9MixedLoad: a `ferry edge` under mixed load — a Kafka
// producer (acks=all, idempotent) and four MQTT 5 devices publishing QoS 1
// — is killed with SIGKILL at a random moment, restarted on the same data
// directory, and killed again: 4 cycles (20 under make torture). After
// each restart every record acknowledged so far is there: each Kafka
// record at the partition and offset it was acknowledged with, each
// PUBACKed MQTT message in the log; no Kafka record is stored twice, and
// a clean SIGTERM exits 0.
func TestTortureKill9MixedLoad(t *testing.T) {
	cycles := tortureSize(4, 20)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>7))
	t.Logf("seed %d", seed)
	dir := t.TempDir()
	createTopic(t, dir, "orders", "--partitions", "3")

	type where struct {
		partition int32
		offset    int64
	}
	var mu sync.Mutex
	kafkaAcked := map[string]where{}
	mqttAcked := map[string]bool{}
	for cycle := 0; cycle < cycles; cycle++ {
		p := startEdge(t, dir)
		// The kill comes once both protocols have had a random number of
		// acknowledgements this cycle.
		killAtK, killAtM := int64(300+rng.IntN(3000)), int64(20+rng.IntN(300))
		var kacks, macks atomic.Int64
		var once sync.Once
		maybeKill := func() {
			if kacks.Load() >= killAtK && macks.Load() >= killAtM {
				once.Do(func() { p.cmd.Process.Signal(syscall.SIGKILL) })
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafkaAddr), kgo.DefaultProduceTopic("orders"),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(2), kgo.ProducerLinger(time.Millisecond), kgo.MaxBufferedRecords(300), kgo.ProducerBatchMaxBytes(8<<10))
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // Kafka
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				select {
				case <-p.done:
					return
				default:
				}
				v := fmt.Sprintf("k-%d-%d", cycle, i)
				cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i % 64)), Value: []byte(v)}, func(r *kgo.Record, err error) {
					if err != nil {
						return // not acknowledged: no promise
					}
					mu.Lock()
					kafkaAcked[string(r.Value)] = where{r.Partition, r.Offset}
					mu.Unlock()
					kacks.Add(1)
					maybeKill()
				})
			}
		}()
		for d := 0; d < 4; d++ { // MQTT
			id := fmt.Sprintf("t%d-dev%d", cycle, d)
			c := device(t, p.mqttAddr, id, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ctx.Err() == nil; i++ {
					v := fmt.Sprintf("m-%s-%d", id, i)
					res, err := c.Publish(ctx, &paho.Publish{Topic: "factory/torture/" + id + "/telemetry", QoS: 1, Payload: []byte(v)})
					if err != nil || (res != nil && res.ReasonCode >= 0x80) {
						return // the broker is gone: not acknowledged
					}
					mu.Lock()
					mqttAcked[v] = true
					mu.Unlock()
					macks.Add(1)
					maybeKill()
				}
			}()
		}
		select {
		case <-p.done:
		case <-ctx.Done():
			t.Fatalf("cycle %d: %d Kafka and %d MQTT acknowledgements in 90 s, the kill was due at %d and %d", cycle, kacks.Load(), macks.Load(), killAtK, killAtM)
		}
		cl.Close() // fails what was in flight: unacknowledged
		cancel()
		wg.Wait()

		p2 := startEdge(t, dir)
		got := readAll(t, p2.kafkaAddr, "orders")
		seen := map[string]int{}
		for _, v := range got {
			seen[v]++
		}
		stored := map[string]int{}
		for _, r := range consumeAll(t, p2.kafkaAddr, "telemetry") {
			stored[string(r.Value)]++
		}
		mu.Lock()
		for v, w := range kafkaAcked {
			if at := got[fmt.Sprintf("%d/%d", w.partition, w.offset)]; at != v {
				t.Fatalf("cycle %d: acknowledged Kafka record %q at %d/%d: found %q", cycle, v, w.partition, w.offset, at)
			}
		}
		for v, n := range seen {
			if n > 1 {
				t.Fatalf("cycle %d: Kafka record %q stored %d times by an idempotent producer", cycle, v, n)
			}
		}
		for v := range mqttAcked {
			if stored[v] == 0 {
				t.Fatalf("cycle %d: PUBACKed MQTT message %q missing", cycle, v)
			}
		}
		nk, nm := len(kafkaAcked), len(mqttAcked)
		mu.Unlock()
		t.Logf("cycle %d: killed after %d Kafka and %d MQTT acknowledgements; %d Kafka and %d MQTT acknowledged records checked in all", cycle, kacks.Load(), macks.Load(), nk, nm)
		p2.cmd.Process.Signal(syscall.SIGTERM)
		if err := <-p2.exited; err != nil {
			t.Fatalf("cycle %d: SIGTERM after the check: %v", cycle, err)
		}
	}
}

// fetchAt fetches one partition at offset with the Kafka protocol itself
// (no client retries hiding an error) and returns the error code and the
// offsets of the records returned.
func fetchAt(t *testing.T, cl *kgo.Client, topic string, partition int32, offset int64) (int16, []int64) {
	t.Helper()
	req := kmsg.NewPtrFetchRequest()
	req.Version = 11
	req.MaxWaitMillis = 10
	req.MaxBytes = 1 << 20
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, offset, 64<<10
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("fetch %s-%d at %d: %v", topic, partition, offset, err)
	}
	if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
		t.Fatalf("fetch answer %+v", resp)
	}
	rp2 := resp.Topics[0].Partitions[0]
	var offs []int64
	if rp2.ErrorCode == 0 {
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: topic, Partition: partition, KeepControlRecords: true}, &rp2, kgo.DefaultDecompressor(), nil)
		for _, r := range fp.Records {
			if r.Offset >= offset {
				offs = append(offs, r.Offset)
			}
		}
	}
	return rp2.ErrorCode, offs
}

// TestTortureCorruptSealedSegment: a bit flips in the middle of a sealed
// segment in the middle of a partition while the edge is stopped. `ferry
// log verify` names the segment and exits 1. Restarted, the edge serves
// every range before and after the damage; a fetch of the damaged batch
// gets KAFKA_STORAGE_ERROR (never the damaged bytes, never a skip), which
// /metrics counts.
func TestTortureCorruptSealedSegment(t *testing.T) {
	dir := t.TempDir()
	createTopic(t, dir, "climate", "--partitions", "1", "--config", "segment.bytes=1048576")
	p := startEdge(t, dir)
	// Batches of at most 64 KiB: many to a segment.
	produceKafka(t, p.kafkaAddr, "climate", 5000, 1000, "c", kgo.ProducerBatchMaxBytes(64<<10))
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	segs, _ := filepath.Glob(filepath.Join(dir, "log", "climate-0", "*.log"))
	sort.Strings(segs)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	victim := segs[len(segs)/2]
	var victimBase, nextBase int64
	fmt.Sscanf(filepath.Base(victim), "%d.log", &victimBase)
	fmt.Sscanf(filepath.Base(segs[len(segs)/2+1]), "%d.log", &nextBase)
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x10
	if err := os.WriteFile(victim, b, 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(ferryBinary(t), "log", "verify", filepath.Join(dir, "log")).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), filepath.Base(victim)) {
		t.Fatalf("ferry log verify on the damage: %v\n%s", err, out)
	}

	p2 := startEdge(t, dir)
	cl, err := kgo.NewClient(kgo.SeedBrokers(p2.kafkaAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if code, offs := fetchAt(t, cl, "climate", 0, 0); code != 0 || len(offs) == 0 || offs[0] != 0 {
		t.Fatalf("fetch at 0, before the damage: error %d, offsets %v", code, offs)
	}
	if code, offs := fetchAt(t, cl, "climate", 0, nextBase); code != 0 || len(offs) == 0 || offs[0] != nextBase {
		t.Fatalf("fetch at %d, after the damage: error %d, offsets %v", nextBase, code, offs)
	}
	// Walk the damaged segment: every batch before the damage is served,
	// then the fetch fails where the damage is.
	next := victimBase
	var damagedAt int64 = -1
	for next < nextBase {
		code, offs := fetchAt(t, cl, "climate", 0, next)
		if code != 0 {
			if code != kerr.CorruptMessage.Code {
				t.Fatalf("fetch at %d: error %d, want CORRUPT_MESSAGE", next, code)
			}
			damagedAt = next
			break
		}
		if len(offs) == 0 || offs[0] != next {
			t.Fatalf("fetch at %d returned offsets %v: records skipped", next, offs)
		}
		next = offs[len(offs)-1] + 1
	}
	if damagedAt <= victimBase {
		t.Fatalf("the damaged segment [%d, %d): refused at %d; want its batches before the damage served and a refusal after", victimBase, nextBase, damagedAt)
	}
	m := ferryMetrics(t, p2.adminAddr, "ferry_kafka_partition_errors_total")
	var corruptErrs float64
	for k, v := range m {
		if strings.Contains(k, "CORRUPT_MESSAGE") {
			corruptErrs += v
		}
	}
	if corruptErrs < 1 {
		t.Errorf("the damaged fetch is not in ferry_kafka_partition_errors_total: %v", m)
	}
	t.Logf("damage in segment %d (to %d): served up to %d, refused there", victimBase, nextBase, damagedAt)
}

// mountTmpfs mounts a tmpfs of size on dir until the test ends. It fails
// the test under CI=true (which runs as root) and skips it elsewhere when
// it cannot mount.
func mountTmpfs(t *testing.T, dir string, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mounting a %s tmpfs (CI runs as root): %v %s", size, err, out)
		}
		t.Skipf("cannot mount a tmpfs here (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// TestTortureDiskFull: the edge's data directory is a 24 MiB filesystem
// that fills up under acks=all load. Producers get a clear error
// (KAFKA_STORAGE_ERROR, MQTT 5 PUBACK 0x80 or above) and the edge keeps
// running; every record acknowledged before is readable; once space is
// freed appends succeed again; after a restart on the full disk
// everything acknowledged is still there.
func TestTortureDiskFull(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk")
	mountTmpfs(t, disk, "24m")
	dir := filepath.Join(disk, "data")
	// Space to free later, taken before the log starts.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	createTopic(t, dir, "orders", "--partitions", "2", "--config", "segment.bytes=1048576")
	p := startEdge(t, dir)

	acked := map[string]string{} // value -> partition/offset
	produce := func(n int, tag string) (ok, failed int, firstErr error) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafkaAddr), kgo.DefaultProduceTopic("orders"),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordRetries(1), kgo.RetryBackoffFn(func(int) time.Duration { return 10 * time.Millisecond }))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var mu sync.Mutex
		for i := 0; i < n; i++ {
			// Random bytes: the producer's compression cannot shrink them.
			pad := make([]byte, 2000)
			for j := range pad {
				pad[j] = byte(rand.Uint32())
			}
			v := fmt.Sprintf("%s-%d-%x", tag, i, pad)
			cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(v)}, func(r *kgo.Record, err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				ok++
				acked[string(r.Value)] = fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			})
		}
		if err := cl.Flush(ctx); err != nil {
			t.Fatalf("producing on a full disk: %v", err)
		}
		return ok, failed, firstErr
	}
	// 24 MiB cannot hold 8,000 records of 4 KB.
	ok, failed, firstErr := produce(8000, "a")
	if failed == 0 {
		t.Fatalf("%d records of 4 KB fitted on a 24 MiB disk", ok)
	}
	if !errors.Is(firstErr, kerr.KafkaStorageError) {
		t.Fatalf("the first refusal on a full disk: %v, want KAFKA_STORAGE_ERROR", firstErr)
	}
	t.Logf("disk full after %d acknowledged records; %d refused (%v)", ok, failed, firstErr)

	// The refused batches were large: take what space they left, so the
	// disk is full to the last page. MQTT 5 devices are told too.
	rest := filepath.Join(disk, "rest")
	f, err := os.Create(rest)
	if err != nil {
		t.Fatal(err)
	}
	for chunk := make([]byte, 4096); ; {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	dev := device(t, p.mqttAddr, "dev-full", true)
	pctx, pcancel := context.WithTimeout(context.Background(), 10*time.Second)
	res, err := dev.Publish(pctx, &paho.Publish{Topic: "factory/x/dev-full/telemetry", QoS: 1, Payload: []byte(strings.Repeat("y", 8<<10))})
	pcancel()
	if err == nil && (res == nil || res.ReasonCode < 0x80) {
		t.Errorf("an MQTT 5 QoS 1 publish on a full disk was acknowledged as stored: %+v", res)
	}

	check := func(addr, when string) {
		t.Helper()
		got := readAll(t, addr, "orders")
		for v, at := range acked {
			if got[at] != v {
				t.Fatalf("%s: acknowledged record at %s lost", when, at)
			}
		}
	}
	check(p.kafkaAddr, "on the full disk")
	select {
	case err := <-p.exited:
		t.Fatalf("the edge exited on a full disk: %v", err)
	default:
	}

	for _, name := range []string{filler, rest} {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	if ok, _, err := produce(50, "b"); ok == 0 {
		t.Fatalf("nothing appended after 4 MiB were freed: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := <-p.exited; err != nil {
		t.Fatalf("SIGTERM with space free again: %v", err)
	}
	p2 := startEdge(t, dir)
	check(p2.kafkaAddr, "after a restart")
}

// goroutines reads go_goroutines from a node's /metrics.
func goroutines(t *testing.T, adminAddr string) float64 {
	t.Helper()
	return ferryMetrics(t, adminAddr, "go_goroutines")["go_goroutines"]
}

// TestTortureConnectionFlood: 5,000 connections are opened against the
// edge's Kafka, MQTT and admin listeners, 250 at a time; each sends the
// start of something (a Kafka frame declaring 100 MB, a CONNECT declaring
// a 200 MB packet, half an HTTP request) and is then reset (SO_LINGER 0).
// The edge stays up, its memory stays bounded (RSS under 256 MiB above
// where it started), its goroutines return to where they were, and it
// serves a producer and a consumer afterwards.
func TestTortureConnectionFlood(t *testing.T) {
	raiseNofile(t)
	p := startEdge(t, t.TempDir())
	pid := p.cmd.Process.Pid
	produceKafka(t, p.kafkaAddr, "warmup", 10, 100, "w")
	baseG := goroutines(t, p.adminAddr)
	baseRSS := procStatusKB(t, pid, "VmRSS")["VmRSS"]

	starts := []struct {
		addr  string
		bytes []byte
	}{
		{p.kafkaAddr, []byte{0x05, 0xf5, 0xe1, 0x00, 0x00, 0x12}},           // a 100,000,000-byte request, then 2 bytes
		{p.mqttAddr, []byte{0x10, 0x80, 0x80, 0x80, 0x60, 0x00, 0x04}},      // CONNECT, remaining length 201,326,592
		{p.adminAddr, []byte("GET /api/status HTTP/1.1\r\nHost: x\r\nX-A")}, // headers never end
	}
	const total, wave = 5000, 250
	var peakRSS int64
	var refused atomic.Int64
	for done := 0; done < total; done += wave {
		conns := make([]*net.TCPConn, 0, wave)
		for i := 0; i < wave; i++ {
			s := starts[(done+i)%len(starts)]
			c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
			if err != nil {
				refused.Add(1) // a full accept queue: the flood is refused, not served
				continue
			}
			tc := c.(*net.TCPConn)
			tc.Write(s.bytes)
			conns = append(conns, tc)
		}
		if rss := procStatusKB(t, pid, "VmRSS")["VmRSS"]; rss > peakRSS {
			peakRSS = rss
		}
		for _, c := range conns {
			c.SetLinger(0) // close with a reset
			c.Close()
		}
		select {
		case err := <-p.exited:
			t.Fatalf("the edge died under the flood after %d connections: %v", done, err)
		default:
		}
	}
	if grew := peakRSS - baseRSS; grew > 256<<10 {
		t.Errorf("RSS grew by %d MiB under the flood (from %d MiB)", grew>>10, baseRSS>>10)
	}
	deadline := time.Now().Add(30 * time.Second)
	for g := goroutines(t, p.adminAddr); g > baseG+10; g = goroutines(t, p.adminAddr) {
		if time.Now().After(deadline) {
			t.Fatalf("%v goroutines 30 s after the flood, %v before it: connections leak", g, baseG)
		}
		time.Sleep(100 * time.Millisecond)
	}
	produceKafka(t, p.kafkaAddr, "after", 100, 100, "a")
	if n := len(consumeAll(t, p.kafkaAddr, "after")); n != 100 {
		t.Fatalf("read %d of 100 records after the flood", n)
	}
	t.Logf("%d connections reset (%d refused at dial); RSS %d -> peak %d MiB; goroutines back to about %v",
		total, refused.Load(), baseRSS>>10, peakRSS>>10, baseG)
}

// TestTortureSoak runs a real edge at half of its measured capacity — a
// Kafka producer (acks=all) paced at half the rate it reached flat out,
// and MQTT devices publishing QoS 1 — for 30 s (10 minutes under make
// torture), sampling its anonymous memory and goroutines every second.
// After the first quarter (warm-up), both must stay flat: goroutines
// within a few of their first value, and the anonymous RSS of the last
// third within 25% (plus 8 MiB) of the second quarter's. Every record
// acknowledged is in the log at the end.
func TestTortureSoak(t *testing.T) {
	dur := tortureSize(30*time.Second, 10*time.Minute)
	dir := t.TempDir()
	// Retention keeps the disk bounded over ten minutes at full speed (it
	// runs every minute); end offsets still count every record.
	createTopic(t, dir, "soak", "--partitions", "2", "--config", "retention.bytes=268435456", "--config", "segment.bytes=67108864")
	p := startEdge(t, dir)
	pid := p.cmd.Process.Pid
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.kafkaAddr), kgo.DefaultProduceTopic("soak"),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	value := []byte(`{"device":"dev1","temperature":21.5,"humidity":40.2,"co2":612}`)
	var acked, failed atomic.Int64
	cb := func(_ *kgo.Record, err error) {
		if err != nil {
			failed.Add(1)
			return
		}
		acked.Add(1)
	}
	// Capacity: flat out for 3 s.
	ctx, cancel := context.WithTimeout(context.Background(), dur+2*time.Minute)
	defer cancel()
	t0 := time.Now()
	for time.Since(t0) < 3*time.Second {
		cl.Produce(ctx, &kgo.Record{Key: []byte("k"), Value: value}, cb)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	capacity := float64(acked.Load()) / time.Since(t0).Seconds()
	rate := capacity / 2
	t.Logf("capacity %.0f records/s flat out; soaking at %.0f records/s for %v", capacity, rate, dur)

	var wg sync.WaitGroup
	soakCtx, stop := context.WithTimeout(ctx, dur)
	defer stop()
	wg.Add(1)
	go func() { // Kafka, paced in 10 ms steps
		defer wg.Done()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, sent := time.Now(), 0
		for {
			select {
			case <-soakCtx.Done():
				return
			case <-tick.C:
			}
			due := int(rate * time.Since(start).Seconds())
			for ; sent < due; sent++ {
				cl.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(sent % 100)), Value: value}, cb)
			}
		}
	}()
	var mqttAcked atomic.Int64
	for d := 0; d < 8; d++ {
		id := fmt.Sprintf("soak-%d", d)
		c := device(t, p.mqttAddr, id, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-soakCtx.Done():
					return
				case <-tick.C:
				}
				if _, err := c.Publish(soakCtx, &paho.Publish{Topic: "factory/soak/" + id + "/telemetry", QoS: 1, Payload: value}); err == nil {
					mqttAcked.Add(1)
				}
			}
		}()
	}
	type sample struct{ anonKB, goroutines float64 }
	var samples []sample
	tick := time.NewTicker(time.Second)
	for done := false; !done; {
		select {
		case <-soakCtx.Done():
			done = true
		case <-tick.C:
			anon := procStatusKB(t, pid, "RssAnon")["RssAnon"]
			samples = append(samples, sample{float64(anon), goroutines(t, p.adminAddr)})
		}
	}
	tick.Stop()
	wg.Wait()
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if failed.Load() > 0 {
		t.Errorf("%d Kafka records failed at half of capacity", failed.Load())
	}
	n := len(samples)
	if n < 8 {
		t.Fatalf("%d samples", n)
	}
	mean := func(s []sample, f func(sample) float64) float64 {
		var sum float64
		for _, x := range s {
			sum += f(x)
		}
		return sum / float64(len(s))
	}
	anon := func(s sample) float64 { return s.anonKB }
	early, late := samples[n/4:n/2], samples[2*n/3:]
	if e, l := mean(early, anon), mean(late, anon); l > e*1.25+8<<10 {
		t.Errorf("anonymous RSS grew from %.1f MiB to %.1f MiB over the soak", e/1024, l/1024)
	}
	minG, maxG := samples[n/4].goroutines, samples[n/4].goroutines
	for _, s := range samples[n/4:] {
		minG, maxG = min(minG, s.goroutines), max(maxG, s.goroutines)
	}
	if maxG-minG > 20 {
		t.Errorf("goroutines ranged from %v to %v over the soak", minG, maxG)
	}
	if got := sumEnds(endsOf(t, p.kafkaAddr, "soak")); got != acked.Load() {
		t.Errorf("the log holds %d records, %d were acknowledged", got, acked.Load())
	}
	if got := sumEnds(endsOf(t, p.kafkaAddr, "telemetry")); got < mqttAcked.Load() {
		t.Errorf("the log holds %d MQTT records, %d were PUBACKed", got, mqttAcked.Load())
	}
	t.Logf("%d Kafka and %d MQTT records acknowledged; anonymous RSS %.1f -> %.1f MiB, goroutines %v..%v",
		acked.Load(), mqttAcked.Load(), mean(early, anon)/1024, mean(late, anon)/1024, minG, maxG)
}
