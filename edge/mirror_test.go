package edge

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	flog "ferry/log"
	"ferry/mirror"
)

// TestMirrorOverTLS runs a full node whose mirror receiver serves TLS and an
// edge node that verifies it with the CA: records cross with their offsets.
// An edge that does not trust the center's certificate ships nothing.
func TestMirrorOverTLS(t *testing.T) {
	pki := newTestPKI(t, "unused")
	quiet := slog.New(slog.DiscardHandler)
	center, err := Start(Options{Mode: "full", DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quiet,
		MirrorAddr: "127.0.0.1:0", MirrorReceiver: mirror.ReceiverOptions{Tokens: map[string]string{"gw1": "s3cret", "gw2": "s3cret"}},
		MirrorTLS: &tls.Config{Certificates: []tls.Certificate{pki.server}}})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()

	start := func(t *testing.T, id string, conf *tls.Config) *Node {
		n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quiet,
			MirrorTo: mirror.SenderOptions{Center: center.MirrorAddr(), EdgeID: id, Token: "s3cret", TLS: conf}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Close() })
		if _, err := n.Log().CreateTopic("telemetry", 1, nil); err != nil {
			t.Fatal(err)
		}
		p, _ := n.Log().Partition("telemetry", 0)
		for i := 0; i < 5; i++ {
			if _, err := p.Append(flog.AppendBatch(nil, []flog.Record{{Key: []byte("dev1"), Value: []byte("21.5"), Timestamp: time.Now().UnixMilli()}})); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}

	trusting := start(t, "gw1", &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1"})
	waitUntil(t, "the records at the center", func() bool {
		p, err := center.Log().Partition("gw1.telemetry", 0)
		return err == nil && p.DurableOffset() == 5
	})
	waitUntil(t, "the acknowledgement at the edge", func() bool { return trusting.Sender().Acked("telemetry", 0) == 5 })
	if st := mirrorStatus(t, trusting); !st.LinkUp || len(st.Partitions) != 1 || st.Partitions[0].Acked != 5 ||
		st.Partitions[0].BacklogRecords != 0 || st.LastAck == nil || st.WireBytes <= 0 {
		t.Errorf("status of a caught-up edge: %+v", st)
	}

	untrusting := start(t, "gw2", &tls.Config{ServerName: "127.0.0.1"}) // system roots only
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, err := center.Log().Partition("gw2.telemetry", 0); err == nil {
			t.Fatal("an edge that does not trust the center's certificate got through")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := untrusting.Sender().Acked("telemetry", 0); got != 0 {
		t.Fatalf("acknowledged %d without a trusted link", got)
	}
	if st := mirrorStatus(t, untrusting); st.LinkUp || st.Partitions[0].BacklogRecords != 5 || st.Partitions[0].BacklogBytes <= 0 ||
		st.Partitions[0].OldestUnshippedAge < 0 || st.LastAck != nil {
		t.Errorf("status of an edge that cannot ship: %+v", st)
	}
	// The center's /api/mirror: its copy of each edge, how far contiguous.
	resp, err := http.Get("http://" + center.AdminAddr() + "/api/mirror")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rs mirror.ReceiverStatus
	if err := json.NewDecoder(resp.Body).Decode(&rs); err != nil {
		t.Fatal(err)
	}
	if len(rs.Edges) != 1 || rs.Edges[0].Edge != "gw1" || !rs.Edges[0].Connected || len(rs.Edges[0].Partitions) != 1 ||
		rs.Edges[0].Partitions[0].ContiguousEnd != 5 || rs.Edges[0].Partitions[0].CopyTopic != "gw1.telemetry" {
		t.Errorf("the center's /api/mirror: %+v", rs)
	}
}

func mirrorStatus(t *testing.T, n *Node) mirror.Status {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/api/mirror")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st mirror.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestMirrorClientCertificates: a center with a client CA knows an edge by
// its certificate's common name (no token needed), still takes token-only
// edges, and refuses a certificate naming another edge, even with that
// edge's right token, and one from another CA.
func TestMirrorClientCertificates(t *testing.T) {
	pki := newTestPKI(t, "gw3")
	stranger := newTestPKI(t, "gw4") // another CA
	quiet := slog.New(slog.DiscardHandler)
	center, err := Start(Options{Mode: "full", DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quiet,
		MirrorAddr: "127.0.0.1:0", MirrorReceiver: mirror.ReceiverOptions{Tokens: map[string]string{"gw1": "s3cret", "gw2": "s3cret"}},
		MirrorTLS: &tls.Config{Certificates: []tls.Certificate{pki.server}, ClientCAs: pki.pool, ClientAuth: tls.VerifyClientCertIfGiven}})
	if err != nil {
		t.Fatal(err)
	}
	defer center.Close()
	start := func(id, token string, certs []tls.Certificate) *Node {
		n, err := Start(Options{DataDir: t.TempDir(), AdminAddr: "127.0.0.1:0", Logger: quiet,
			MirrorTo: mirror.SenderOptions{Center: center.MirrorAddr(), EdgeID: id, Token: token,
				TLS: &tls.Config{RootCAs: pki.pool, ServerName: "127.0.0.1", Certificates: certs}}})
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
	rejected := func() float64 {
		return scrape(t, center, `ferry_mirror_receiver_rejected_total{reason="auth"}`)
	}
	byCert := start("gw3", "", []tls.Certificate{pki.client})
	byToken := start("gw2", "s3cret", nil)
	for _, n := range []*Node{byCert, byToken} {
		waitUntil(t, "the acknowledgement", func() bool { return n.Sender().Acked("telemetry", 0) == 1 })
	}
	// gw3's certificate presented as gw1, with gw1's token: refused.
	impostor := start("gw1", "s3cret", []tls.Certificate{pki.client})
	waitUntil(t, "the impostor's refusal", func() bool { return rejected() >= 1 })
	outsider := start("gw4", "", []tls.Certificate{stranger.client})
	waitUntil(t, "the outsider's failed handshake", func() bool {
		return scrape(t, center, `ferry_mirror_receiver_rejected_total{reason="tls"}`) >= 1
	})
	for _, n := range []*Node{impostor, outsider} {
		if st := mirrorStatus(t, n); st.LinkUp || n.Sender().Acked("telemetry", 0) != 0 {
			t.Errorf("%s got through: %+v", n.Sender().EdgeID(), st)
		}
	}
	for _, topic := range []string{"gw1.telemetry", "gw4.telemetry"} {
		if _, err := center.Log().Partition(topic, 0); err == nil {
			t.Errorf("%s exists at the center", topic)
		}
	}
}

// scrape reads one series' value from a node's /metrics (0 when absent).
func scrape(t *testing.T, n *Node, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	return 0
}
