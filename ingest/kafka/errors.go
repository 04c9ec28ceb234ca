package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"

	flog "ferry/log"
)

// errorCode maps a log error to the Kafka error code a client understands.
func errorCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flog.ErrUnknownTopic), errors.Is(err, flog.ErrUnknownPartition):
		return kerr.UnknownTopicOrPartition.Code
	case errors.Is(err, flog.ErrOffsetOutOfRange):
		return kerr.OffsetOutOfRange.Code
	case errors.Is(err, flog.ErrCorruptBatch), errors.Is(err, flog.ErrCorruptSegment):
		// A damaged stored batch answers what Kafka's ReplicaManager
		// answers for a CorruptRecordException on read; Java consumers
		// and librdkafka report it to the application, where
		// KAFKA_STORAGE_ERROR is retried silently.
		return kerr.CorruptMessage.Code
	case errors.Is(err, flog.ErrBatchTooLarge):
		return kerr.MessageTooLarge.Code
	case errors.Is(err, flog.ErrInflatedTooLarge):
		// A compressed batch whose records inflate past max.inflated.bytes
		// (a decompression bomb): Kafka's answer for a record list over a
		// size limit, not retriable.
		return kerr.RecordListTooLarge.Code
	case errors.Is(err, flog.ErrOutOfOrderSequence):
		return kerr.OutOfOrderSequenceNumber.Code
	case errors.Is(err, flog.ErrDuplicateSequence):
		return kerr.DuplicateSequenceNumber.Code
	case errors.Is(err, flog.ErrProducerFenced):
		return kerr.InvalidProducerEpoch.Code
	case errors.Is(err, flog.ErrInvalidTopic):
		return kerr.InvalidTopicException.Code
	case errors.Is(err, flog.ErrTopicExists):
		return kerr.TopicAlreadyExists.Code
	case errors.Is(err, flog.ErrInvalidPartitions):
		return kerr.InvalidPartitions.Code
	case errors.Is(err, flog.ErrPartitionLimit):
		// The node's partition cap or open-file budget: a broker policy.
		return kerr.PolicyViolation.Code
	case errors.Is(err, flog.ErrInvalidConfig):
		return kerr.InvalidConfig.Code
	case errors.Is(err, flog.ErrDiskBudget):
		// The edge's disk budget is full of records not yet mirrored:
		// retriable back-pressure, as the mirror issue asks.
		return kerr.ThrottlingQuotaExceeded.Code
	case errors.Is(err, flog.ErrClosed):
		// Shutting down: a retriable error sends the client elsewhere or
		// back later.
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, flog.ErrNotEnoughReplicas):
		return kerr.NotEnoughReplicas.Code
	case errors.Is(err, flog.ErrNotEnoughReplicasAfterAppend):
		return kerr.NotEnoughReplicasAfterAppend.Code
	case errors.Is(err, errNotLeader), errors.Is(err, flog.ErrNotLeader):
		return kerr.NotLeaderForPartition.Code
	case errors.Is(err, ErrNoController):
		return kerr.NotController.Code
	case errors.Is(err, ErrReplicationFactor):
		return kerr.InvalidReplicationFactor.Code
	case errors.Is(err, ErrInvalidReplicaAssignment):
		return kerr.InvalidReplicaAssignment.Code
	case errors.Is(err, ErrNoReassignment):
		return kerr.NoReassignmentInProgress.Code
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	default: // I/O errors, a disabled partition
		return kerr.KafkaStorageError.Code
	}
}

// errorMessage is the message for responses that carry one.
func errorMessage(err error) *string {
	if err == nil {
		return nil
	}
	s := err.Error()
	return &s
}
