package kafka

import (
	"crypto/sha256"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var captureSeeds = flag.Bool("capture-seeds", false, "record real client requests into testdata/fuzz/FuzzRequest")

// TestCaptureClientRequests (run with -capture-seeds) puts a recording proxy
// between real clients (franz-go, kcat) and the broker and writes one frame
// per API key and version they sent into FuzzRequest's seed corpus.
func TestCaptureClientRequests(t *testing.T) {
	if !*captureSeeds {
		t.Skip("run with -capture-seeds to refresh the seed corpus")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// Clients must keep talking through the proxy: advertise it.
	b := startBroker(t, func(o *Options) { o.Advertised = ln.Addr().String() })
	b.log.CreateTopic("cap", 2, nil)
	var mu sync.Mutex
	seen := map[string][]byte{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", b.addr)
			if err != nil {
				c.Close()
				continue
			}
			go io.Copy(c, up)
			go func() {
				defer up.Close()
				for {
					var size [4]byte
					if _, err := io.ReadFull(c, size[:]); err != nil {
						return
					}
					frame := make([]byte, binary.BigEndian.Uint32(size[:]))
					if _, err := io.ReadFull(c, frame); err != nil {
						return
					}
					key, ver := int16(binary.BigEndian.Uint16(frame)), int16(binary.BigEndian.Uint16(frame[2:]))
					mu.Lock()
					name := fmt.Sprintf("%s-v%d", kmsg.NameForKey(key), ver)
					if _, ok := seen[name]; !ok {
						seen[name] = append([]byte(nil), frame...)
					}
					mu.Unlock()
					up.Write(size[:])
					up.Write(frame)
				}
			}()
		}
	}()
	addr := ln.Addr().String()
	// franz-go: produce, consume in a group, admin.
	produceVia(t, addr)
	if kcat, err := exec.LookPath("kcat"); err == nil {
		exec.Command(kcat, "-b", addr, "-L").Run()
		cmd := exec.Command(kcat, "-b", addr, "-P", "-t", "cap", "-K:")
		cmd.Stdin = strings.NewReader("a:1\nb:2\n")
		cmd.Run()
		exec.Command(kcat, "-b", addr, "-C", "-t", "cap", "-o", "beginning", "-e").Run()
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzRequest")
	mu.Lock()
	defer mu.Unlock()
	for name, frame := range seen {
		sum := sha256.Sum256(frame)
		path := filepath.Join(dir, fmt.Sprintf("client-%s-%x", name, sum[:4]))
		if err := os.WriteFile(path, []byte(fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", frame)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("captured %d distinct request kinds", len(seen))
}

func produceVia(t *testing.T, addr string) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("cap"), kgo.ConsumerGroup("capg"), kgo.ConsumeTopics("cap"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := ctxT(t)
	cl.ProduceSync(ctx, &kgo.Record{Key: []byte("k"), Value: []byte("v")})
	cl.PollFetches(ctx)
	cl.CommitUncommittedOffsets(ctx)
}
