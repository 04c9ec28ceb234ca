package mirror

import (
	flog "ferry/log"
)

// The edge's log tells the sender of DeleteRecords (Kafka's API 21) as it
// tells it of the disk budget's drop-oldest losses: records a client
// deleted before the center had them are a gap the center is told (a
// wire.Gap, or a ferry.gap header for a Kafka target), never skipped
// silently.
var _ flog.DeleteObserver = (*Sender)(nil)

// bucketDeleted holds, per partition, the first offset of the lost range
// that DeleteRecords removed, so the gap's reason survives a restart.
var bucketDeleted = []byte("deleted")

// WillDelete records that DeleteRecords is moving a partition's log start
// past offsets from..to: those the center has not acknowledged are noted
// durably as lost, as WillDrop does, so the gap is told even after a
// restart, and counted in ferry_mirror_deleted_records_total.
func (s *Sender) WillDelete(topic string, partition int32, from, to int64) {
	first, ok := s.noteLost(topic, partition, from, to, s.deleted, "recording deleted records")
	if !ok {
		return
	}
	s.metrics.deleted.WithLabelValues(topic).Add(float64(to + 1 - first))
	s.logger.Warn("mirror: records deleted (DeleteRecords) before the center had them; the center will be told the gap",
		"topic", topic, "partition", partition, "from_offset", first, "to_offset", to)
}
