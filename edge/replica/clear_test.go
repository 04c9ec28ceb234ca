package replica_test

import (
	"encoding/binary"
	"strconv"
	"testing"
	"time"

	"ferry/edge/replica"
	flog "ferry/log"
)

// A staged live tail cleared once merged (CommittedCopy.Clear, the mirror
// receiver's) is cleared on every in-sync replica by the time Clear
// returns: the leader's power may go at once, and the follower elected in
// its place holds no stale staged tail (nothing a consumer of the staging
// topic would read again, nothing the receiver would take as staged).
func TestClearedCopyReachesEveryReplica(t *testing.T) {
	c := newCluster(t, 30*time.Second)
	cp, ok := c.nodes[1].mgr.Load().Copy(topic, 0)
	if !ok {
		t.Fatal("no copy on the leader")
	}
	// The staged tail: the edge's records from offset 1000 on.
	if err := c.nodes[1].part.StartOver(1000); err != nil {
		t.Fatal(err)
	}
	var last int64
	for i := 0; i < 5; i++ {
		b := flog.AppendBatch(nil, []flog.Record{{Value: []byte("staged" + strconv.Itoa(i))}})
		binary.BigEndian.PutUint64(b, uint64(cp.EndOffset()))
		res, err := cp.AppendAt(b)
		if err != nil {
			t.Fatal(err)
		}
		last = res.LastOffset
	}
	if err := cp.WaitDurable(ctxT(t), last); err != nil {
		t.Fatal(err)
	}
	c.waitIdentical(1)
	if err := cp.Clear(); err != nil {
		t.Fatal(err)
	}
	end := c.nodes[1].part.EndOffset()
	c.nodes[1].stop() // the leader's power goes
	c.change(func(a *replica.Assignment) { a.Leader, a.LeaderEpoch, a.ISR = 2, 2, []int32{2, 3} })
	c.waitLeader(2, 2)
	for id := int32(2); id <= 3; id++ {
		p := c.nodes[id].part
		if p.Size() != 0 || p.StartOffset() != end || p.EndOffset() != end {
			t.Fatalf("node %d holds [%d, %d), %d bytes, after the leader cleared its copy at %d", id, p.StartOffset(), p.EndOffset(), p.Size(), end)
		}
	}
}
