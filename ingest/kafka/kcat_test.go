package kafka

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

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

// TestKcat drives the broker with kcat (librdkafka), a client no one on
// this team wrote: metadata, keyed produce with Kafka's murmur2
// partitioner, and consume from the beginning to the end.
func TestKcat(t *testing.T) {
	kcat := requireTool(t, "kcat")
	b := startBroker(t, nil)
	if _, err := b.log.CreateTopic("kcat-events", 4, nil); err != nil {
		t.Fatal(err)
	}
	run := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command(kcat, append([]string{"-b", b.addr, "-m", "20"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %v: %v\n%s", args, err, errOut.String())
		}
		if strings.Contains(errOut.String(), "PROTOERR") || strings.Contains(errOut.String(), "parse failure") {
			t.Fatalf("kcat %v reported protocol errors:\n%s", args, errOut.String())
		}
		return out.String()
	}
	if md := run("", "-L", "-t", "kcat-events"); !strings.Contains(md, `topic "kcat-events" with 4 partitions`) {
		t.Fatalf("kcat -L:\n%s", md)
	}
	var in strings.Builder
	const n = 200
	for i := 0; i < n; i++ {
		fmt.Fprintf(&in, "sensor-%d:reading %d\n", i%9, i)
	}
	run(in.String(), "-P", "-t", "kcat-events", "-K:", "-X", "partitioner=murmur2_random")
	out := run("", "-C", "-t", "kcat-events", "-o", "beginning", "-e", "-f", "%k %p %o %s\n")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != n {
		t.Fatalf("kcat consumed %d records, want %d:\n%s", len(lines), n, out)
	}
	last := map[string]int{}
	for _, line := range lines {
		var key, word string
		var part, off, v int
		if _, err := fmt.Sscanf(line, "%s %d %d %s %d", &key, &part, &off, &word, &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if want := flog.PartitionForKey([]byte(key), 4); int32(part) != want {
			t.Fatalf("key %s on partition %d, Kafka's partitioner says %d", key, part, want)
		}
		if prev, ok := last[key]; ok && v <= prev {
			t.Fatalf("key %s out of order: %d after %d", key, v, prev)
		}
		last[key] = v
	}
}
