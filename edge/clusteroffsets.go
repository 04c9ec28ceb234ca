package edge

import (
	"context"
	"fmt"

	"ferry/edge/replica"
	"ferry/ingest/kafka"
	flog "ferry/log"
)

// replicatedOffsets is the cluster's __consumer_offsets as the group
// coordinator writes it (kafka.OffsetsLog) through the replica manager: a
// commit is appended by the partition's leader and answered once the high
// watermark passes it, so it survives the loss of any min.insync.replicas-1
// replicas, as Kafka's offsets.commit.required.acks=-1; a coordinator that
// lost the leadership gets flog.ErrNotLeader (NOT_COORDINATOR).
type replicatedOffsets struct {
	log      *flog.Log
	replicas *replica.Manager
}

var _ kafka.OffsetsLog = replicatedOffsets{}

func (o replicatedOffsets) leader(partition int32) (*replica.Leader, error) {
	l, ok := o.replicas.Leader(offsetsTopic, partition)
	if !ok {
		return nil, fmt.Errorf("%w: %s-%d", flog.ErrNotLeader, offsetsTopic, partition)
	}
	return l, nil
}

func (o replicatedOffsets) Append(ctx context.Context, partition int32, recs []flog.Record) (int64, error) {
	l, err := o.leader(partition)
	if err != nil {
		return -1, err
	}
	res, err := l.Append(flog.AppendBatch(nil, recs), true)
	if err != nil {
		return -1, err
	}
	if err := l.WaitCommitted(ctx, res.LastOffset); err != nil {
		return -1, err
	}
	return res.LastOffset, nil
}

// Bounds ends at the leader's log end, as Kafka's coordinator loads: a new
// leader's high watermark may lag its followers' last fetch, while its log
// is what every replica will hold (followers cut what diverges from it).
func (o replicatedOffsets) Bounds(partition int32) (int64, int64, error) {
	if _, err := o.leader(partition); err != nil {
		return 0, 0, err
	}
	p, err := o.log.Partition(offsetsTopic, partition)
	if err != nil {
		return 0, 0, err
	}
	return p.StartOffset(), p.EndOffset(), nil
}

func (o replicatedOffsets) Read(partition int32, offset int64, maxBytes int) ([]byte, error) {
	p, err := o.log.Partition(offsetsTopic, partition)
	if err != nil {
		return nil, err
	}
	res, err := p.Read(offset, maxBytes, nil)
	return res.Data, err
}

func (o replicatedOffsets) Trim(ctx context.Context, partition int32, offset int64) error {
	_, err := o.log.DeleteRecords(ctx, offsetsTopic, partition, offset)
	return err
}
