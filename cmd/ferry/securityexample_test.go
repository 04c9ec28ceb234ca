package main

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"ferry/edge"
	"ferry/ingest/kafka"
)

// securityExample is docs/security.md's example: its ferry users/acls
// lines, with ./data as dir, each as arguments and standard input.
func securityExample(t *testing.T, dir string) [][2][]string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	var cmds [][2][]string
	for _, line := range strings.Split(string(doc), "\n") {
		if !strings.HasPrefix(line, "ferry users add ") && !strings.HasPrefix(line, "ferry acls add ") {
			continue
		}
		line, _, _ = strings.Cut(line, "  #")
		var in []string
		if l, input, ok := strings.Cut(line, "<<<"); ok {
			line, in = l, []string{strings.Trim(strings.TrimSpace(input), "'") + "\n"}
		}
		args := strings.Fields(strings.ReplaceAll(line, "./data", dir))[1:]
		cmds = append(cmds, [2][]string{args, in})
	}
	if len(cmds) < 3 {
		t.Fatalf("docs/security.md: %d ferry users/acls lines found", len(cmds))
	}
	return cmds
}

// docs/security.md's example works as written: alice, given what it
// gives her, produces to sensors.temp, a topic that does not exist yet.
func TestSecurityExampleAsWritten(t *testing.T) {
	fastHashes(t)
	dir := t.TempDir()
	for _, c := range securityExample(t, dir) {
		if len(c[1]) > 0 {
			withStdin(t, c[1][0])
		}
		if code, out, errOut := ferry(t, c[0]...); code != 0 {
			t.Fatalf("ferry %s: exit %d %s%s", strings.Join(c[0], " "), code, out, errOut)
		}
	}
	n, err := edge.Start(edge.Options{DataDir: dir, AdminAddr: "127.0.0.1:0", KafkaAddr: "127.0.0.1:0", AutoCreateTopics: true,
		KafkaSASL: []string{kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512}, KafkaSuperUsers: []string{"admin"},
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(n.KafkaAddr()), kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(10*time.Second),
		kgo.SASL(scram.Auth{User: "alice", Pass: "s3cret"}.AsSha256Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "sensors.temp", Value: []byte("21.5")}).FirstErr(); err != nil {
		t.Fatalf("alice producing to sensors.temp as the example has it: %v", err)
	}
}
