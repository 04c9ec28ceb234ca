package log

import "fmt"

// filesPerPartition is how many files an open partition holds: its active
// segment's log, offset index and time index. Sealed segments are opened
// only while read.
const filesPerPartition = 3

// CheckNewTopic says whether a topic of that many partitions could be
// created now, under the caps and the open-file budget (Kafka's
// validate-only CreateTopics).
func (l *Log) CheckNewTopic(partitions int32) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.checkPartitions(partitions, partitions)
}

// checkPartitions refuses adding partitions to a topic that would then
// have topicTotal: past the cap per topic, the log's cap, or the open-file
// budget. l.mu is held.
func (l *Log) checkPartitions(topicTotal, adding int32) error {
	if l.maxPerTopic > 0 && topicTotal > l.maxPerTopic {
		return fmt.Errorf("%w: %d partitions in one topic, past the cap of %d per topic (max-partitions-per-topic)",
			ErrInvalidPartitions, topicTotal, l.maxPerTopic)
	}
	var have int64
	for _, t := range l.topics {
		have += int64(len(t.parts))
	}
	total := have + int64(adding)
	if l.maxParts > 0 && total > int64(l.maxParts) {
		return fmt.Errorf("%w: %d partitions on this node with %d more, past the cap of %d (max-partitions)",
			ErrPartitionLimit, have, adding, l.maxParts)
	}
	if limit := l.fileLimit; limit > 0 {
		budget := limit - max(limit/4, 64)
		if total*filesPerPartition > budget {
			return fmt.Errorf("%w: %d partitions would hold %d files open, past the %d this process may (open-file limit %d less a quarter for connections)",
				ErrPartitionLimit, total, total*filesPerPartition, budget, limit)
		}
	}
	return nil
}
