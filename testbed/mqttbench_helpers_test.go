package testbed

// Helpers of the MQTT benchmarks (mqtt_bench_test.go): the two brokers as
// processes, their resident memory, sensor payloads from the room-climate
// sample, and a minimal idle MQTT client.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// startBenchBroker starts the broker named ("ferry" or "mosquitto") and
// returns its MQTT address and process id; fp is ferry's process, nil for
// mosquitto.
func startBenchBroker(tb testing.TB, broker, mosquitto string) (addr string, pid int, fp *ferryProc) {
	tb.Helper()
	if broker == "ferry" {
		fp = startEdge(tb, tb.TempDir())
		return fp.mqttAddr, fp.cmd.Process.Pid, fp
	}
	mp := startMosquitto(tb, mosquitto)
	return mp.addr, mp.cmd.Process.Pid, nil
}

// mosquittoBinary is Debian's mosquitto broker; the benchmark is skipped
// without it, except under CI=true, where `make deps` must have installed it.
func mosquittoBinary(tb testing.TB) string {
	tb.Helper()
	for _, p := range []string{"/usr/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("mosquitto")
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("mosquitto is required under CI=true (make deps installs it): %v", err)
	}
	tb.Skip("mosquitto not installed (apt-get install mosquitto): the MQTT benchmarks need their peer")
	return ""
}

// mosquittoProc is a running mosquitto.
type mosquittoProc struct {
	cmd    *exec.Cmd
	addr   string
	exited chan error
}

// startMosquitto runs mosquitto on a free 127.0.0.1 port with a minimal
// configuration: anonymous clients, no persistence, no limit on messages
// in flight, errors and warnings only on stderr.
func startMosquitto(tb testing.TB, bin string) *mosquittoProc {
	tb.Helper()
	dir := tb.TempDir()
	port := freePort(tb)
	conf := fmt.Sprintf(`listener %d 127.0.0.1
allow_anonymous true
persistence false
max_inflight_messages 0
max_queued_messages 10000
max_connections -1
connection_messages false
log_dest stderr
log_type error
log_type warning
set_tcp_nodelay true
`, port)
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, "-c", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p := &mosquittoProc{cmd: cmd, addr: fmt.Sprintf("127.0.0.1:%d", port), exited: make(chan error, 1)}
	go func() { p.exited <- cmd.Wait() }()
	tb.Cleanup(func() {
		cmd.Process.Kill()
		<-p.exited
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case err := <-p.exited:
			tb.Fatalf("mosquitto exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("mosquitto not listening on %s within 10 s: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rssBytes is a process's resident set size (VmRSS in /proc/PID/status).
func rssBytes(tb testing.TB, pid int) int64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("no VmRSS for pid %d", pid)
	return 0
}

// raiseNofile lifts the soft open-files limit to the hard one and returns
// it. Brokers started afterwards inherit it.
func raiseNofile(tb testing.TB) uint64 {
	tb.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		tb.Fatal(err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			tb.Fatal(err)
		}
	}
	return rl.Cur
}

// ferryMetrics reads the admin listener's Prometheus text and returns the
// samples whose name (with labels) starts with one of prefixes.
func ferryMetrics(tb testing.TB, adminAddr string, prefixes ...string) map[string]float64 {
	tb.Helper()
	out, err := scrapeMetrics(adminAddr, prefixes...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// scrapeMetrics is ferryMetrics returning its error (the node may be
// down, or paused).
func scrapeMetrics(adminAddr string, prefixes ...string) (map[string]float64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		for _, p := range prefixes {
			if strings.HasPrefix(line, p) {
				if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
					out[line[:i]] = v
				}
			}
		}
	}
	return out, sc.Err()
}

// climateRow is one reading of the room-climate sample.
type climateRow struct {
	loc, node                 string // location (A, B, C) and sensor node id
	ts                        int64
	temp, hum, light1, light2 string // as written in the CSV
}

// roomClimateRows reads testdata/room-climate/*.csv.
func roomClimateRows(tb testing.TB) []climateRow { return readClimate(tb, "testdata/room-climate") }

// readClimate reads every room-climate CSV in dir (files named
// location_X-...), in file order.
func readClimate(tb testing.TB, dir string) []climateRow {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.csv"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("room-climate data missing in %s: %v", dir, err)
	}
	var rows []climateRow
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			tb.Fatal(err)
		}
		r := csv.NewReader(bytes.NewReader(b))
		r.TrimLeadingSpace = true
		recs, err := r.ReadAll()
		if err != nil {
			tb.Fatalf("%s: %v", f, err)
		}
		loc := strings.TrimPrefix(strings.SplitN(filepath.Base(f), "-", 2)[0], "location_")
		for _, rec := range recs {
			if len(rec) < 8 {
				tb.Fatalf("%s: short line %v", f, rec)
			}
			ts, err := strconv.ParseInt(rec[1], 10, 64)
			if err != nil {
				tb.Fatalf("%s: %v", f, err)
			}
			rows = append(rows, climateRow{loc: loc, node: rec[3], ts: ts, temp: rec[4], hum: rec[5], light1: rec[6], light2: rec[7]})
		}
	}
	return rows
}

// sensorPayloads returns n JSON payloads for device, replaying consecutive
// rows of the sample from a point that depends on the device, e.g.
// {"device":"d0042","ts":1458031648545,"temperature":20.48,"humidity":42.332,"light1":185.71,"light2":492.2}
func sensorPayloads(rows []climateRow, device string, seed, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		r := rows[(seed*37+i)%len(rows)]
		out[i] = fmt.Appendf(nil, `{"device":%q,"ts":%d,"temperature":%s,"humidity":%s,"light1":%s,"light2":%s}`,
			device, r.ts, r.temp, r.hum, r.light1, r.light2)
	}
	return out
}

// idleClient is a connected MQTT 3.1.1 client that sends nothing but
// PINGREQ: the cheapest possible device, so that 10,000 of them fit in the
// benchmark process. Packets are encoded and decoded with mochi's packets
// package.
type idleClient struct{ c net.Conn }

// dialIdle connects id over MQTT 3.1.1 with a clean session and the given
// keepalive and waits for a successful CONNACK.
func dialIdle(ctx context.Context, addr, id string, keepalive uint16) (*idleClient, error) {
	return dialRawMQTT(ctx, addr, id, keepalive, 4)
}

// dialRawMQTT is dialIdle with the protocol version (4: MQTT 3.1.1, 5: MQTT 5).
func dialRawMQTT(ctx context.Context, addr, id string, keepalive uint16, version byte) (*idleClient, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: packets.Connect},
		ProtocolVersion: version,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: keepalive,
			ClientIdentifier: id},
	}
	var buf bytes.Buffer
	if err := pk.ConnectEncode(&buf); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(buf.Bytes()); err != nil {
		c.Close()
		return nil, err
	}
	ack, err := readPacket(c, version)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("%s: reading CONNACK: %w", id, err)
	}
	if ack.FixedHeader.Type != packets.Connack {
		c.Close()
		return nil, fmt.Errorf("%s: got packet type %d, want CONNACK", id, ack.FixedHeader.Type)
	}
	if ack.ReasonCode != 0 {
		c.Close()
		return nil, fmt.Errorf("%s: CONNACK refused, code %#x", id, ack.ReasonCode)
	}
	c.SetDeadline(time.Time{})
	return &idleClient{c: c}, nil
}

// readPacket reads one packet (CONNACK only is decoded) byte by byte, so
// nothing after it is consumed.
func readPacket(c net.Conn, version byte) (packets.Packet, error) {
	br := byteReader{c}
	var pk packets.Packet
	pk.ProtocolVersion = version
	hb, err := br.ReadByte()
	if err != nil {
		return pk, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, err
	}
	n, _, err := packets.DecodeLength(br)
	if err != nil {
		return pk, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		return pk, err
	}
	if pk.FixedHeader.Type == packets.Connack {
		err = pk.ConnackDecode(body)
	}
	return pk, err
}

type byteReader struct{ r io.Reader }

func (b byteReader) ReadByte() (byte, error) {
	var x [1]byte
	_, err := io.ReadFull(b.r, x[:])
	return x[0], err
}

// pingreq is an encoded PINGREQ.
var pingreq = func() []byte {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}}
	var buf bytes.Buffer
	pk.PingreqEncode(&buf)
	return buf.Bytes()
}()

// ping sends a PINGREQ; the PINGRESP is left unread in the socket buffer.
func (ic *idleClient) ping() error {
	ic.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := ic.c.Write(pingreq)
	return err
}
