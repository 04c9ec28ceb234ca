package kafka

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// A node alone answers AlterPartitionReassignments and
// ListPartitionReassignments as a Kafka cluster of one broker: its own id
// is the only replica there is, nothing is ever under way.
func TestPartitionReassignmentsAlone(t *testing.T) {
	b := startBroker(t, func(o *Options) { o.AutoCreateTopics = false })
	adm := kadm.NewClient(b.client(t))
	ctx := ctxT(t)
	if _, err := adm.CreateTopics(ctx, 2, 1, nil, "orders"); err != nil {
		t.Fatal(err)
	}
	self := b.srv.opts.NodeID
	var req kadm.AlterPartitionAssignmentsReq
	req.Assign("orders", 0, []int32{self})
	req.Assign("orders", 1, []int32{self, 99})
	req.Assign("orders", 7, []int32{self})
	req.Assign("missing", 0, []int32{self})
	req.CancelAssign("orders", 1)
	resp, err := adm.AlterPartitionAssignments(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// Assign then CancelAssign on one partition: the cancel is what is sent.
	for _, c := range []struct {
		topic     string
		partition int32
		want      error
	}{
		{"orders", 0, nil},
		{"orders", 1, kerr.NoReassignmentInProgress},
		{"orders", 7, kerr.UnknownTopicOrPartition},
		{"missing", 0, kerr.UnknownTopicOrPartition},
	} {
		if got := resp[c.topic][c.partition].Err; !errors.Is(got, c.want) {
			t.Errorf("%s-%d: %v, want %v", c.topic, c.partition, got, c.want)
		}
	}
	var bad kadm.AlterPartitionAssignmentsReq
	bad.Assign("orders", 0, []int32{self, 99})
	bad.Assign("orders", 1, []int32{self, self})
	resp, err = adm.AlterPartitionAssignments(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 2; p++ {
		if got := resp["orders"][p].Err; !errors.Is(got, kerr.InvalidReplicaAssignment) {
			t.Errorf("orders-%d: %v, want INVALID_REPLICA_ASSIGNMENT", p, got)
		}
	}
	list, err := adm.ListPartitionReassignments(ctx, kadm.TopicsSet{"orders": {0: {}, 1: {}}})
	if err != nil || len(list) != 0 {
		t.Fatalf("list: %v %v", list, err)
	}
}
