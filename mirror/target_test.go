package mirror

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	flog "ferry/log"
)

// heldTarget is a Target whose partitions are not *log.Partition: each
// wraps the log's, counts the batches appended through it and holds every
// durability wait until released, as a replicated partition waiting for
// its followers would.
type heldTarget struct {
	LogTarget
	appended atomic.Int64
	release  chan struct{}
}

type heldCopy struct {
	Copy
	t *heldTarget
}

func (t *heldTarget) Partition(topic string, partition int32) (Copy, error) {
	p, err := t.LogTarget.Partition(topic, partition)
	if err != nil {
		return nil, err
	}
	return heldCopy{p, t}, nil
}

func (c heldCopy) AppendAt(batches ...[]byte) (flog.AppendResult, error) {
	c.t.appended.Add(int64(len(batches)))
	return c.Copy.AppendAt(batches...)
}

func (c heldCopy) WaitDurable(ctx context.Context, offset int64) error {
	select {
	case <-c.t.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return c.Copy.WaitDurable(ctx, offset)
}

// The receiver writes only through its Target's Copy: a partition that is
// not a *log.Partition gets every chunk through AppendAt, and no
// acknowledgement leaves before its WaitDurable returns.
func TestReceiverWritesThroughTheCopyInterface(t *testing.T) {
	edgeDir := t.TempDir()
	edgeLog := openLog(t, edgeDir)
	if _, err := edgeLog.CreateTopic("telemetry", 2, nil); err != nil {
		t.Fatal(err)
	}
	produce(t, edgeLog, "telemetry", 0, 30, "a")
	produce(t, edgeLog, "telemetry", 1, 20, "b")

	centerLog := openLog(t, t.TempDir())
	target := &heldTarget{LogTarget: LogTarget{centerLog}, release: make(chan struct{})}
	r, err := NewReceiver(ReceiverOptions{Log: target, Tokens: map[string]string{"gw1": "s3cret"}, Logger: quiet, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Serve(ln) }()
	t.Cleanup(func() { r.Close(); <-done })
	released := false
	t.Cleanup(func() {
		if !released {
			close(target.release)
		}
	})
	startSender(t, edgeLog, edgeDir, ln.Addr().String())

	// Every batch reaches the copy through the wrapper while the waits hold.
	waitFor(t, "both partitions appended through the Copy", func() bool {
		for p := int32(0); p < 2; p++ {
			src, _ := edgeLog.Partition("telemetry", p)
			dst, err := centerLog.Partition("gw1.telemetry", p)
			if err != nil || dst.EndOffset() < src.EndOffset() {
				return false
			}
		}
		return true
	})
	if got := target.appended.Load(); got != 50 {
		t.Fatalf("%d batches appended through the Copy, want 50", got)
	}
	if got := testutil.ToFloat64(r.metrics.acks); got != 0 {
		t.Fatalf("%v acknowledgements sent while the Copy's WaitDurable held them", got)
	}

	close(target.release)
	released = true
	waitCopied(t, edgeLog, centerLog, "telemetry")
	waitFor(t, "acknowledgements once durable", func() bool { return testutil.ToFloat64(r.metrics.acks) > 0 })
}
