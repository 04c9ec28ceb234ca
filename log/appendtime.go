package log

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// message.timestamp.type (Kafka's rule): CreateTime keeps the producer's
// timestamps; with LogAppendTime, Append sets each batch's MaxTimestamp
// to the time of the append and the LogAppendTime attribute bit (the CRC
// recomputed), as Kafka's broker does, and every record then reads as
// appended at that time (clients take a LogAppendTime batch's
// MaxTimestamp for each of its records; so do retention, the time index
// and ListOffsets). Copies (AppendAt) keep their source's bytes.

func init() {
	configSpecs[ConfigMessageTimestampType] = configSpec{"CreateTime",
		"whose time records carry: CreateTime, the producer's; LogAppendTime, the broker's at append",
		func(c *TopicConfig, v string) error {
			switch v {
			case "CreateTime":
				c.LogAppendTime = false
			case "LogAppendTime":
				c.LogAppendTime = true
			default:
				return fmt.Errorf("%w: %s=%q: want CreateTime or LogAppendTime", ErrInvalidConfig, ConfigMessageTimestampType, v)
			}
			return nil
		}}
}

// stampAppendTime makes batch a LogAppendTime batch appended at nowMs,
// in place. Control batches are left alone.
func stampAppendTime(batch []byte, h BatchHeader, nowMs int64) BatchHeader {
	if h.IsControl() {
		return h
	}
	h.Attributes |= attrLogAppendTime
	h.MaxTimestamp = nowMs
	binary.BigEndian.PutUint16(batch[offAttributes:], uint16(h.Attributes))
	binary.BigEndian.PutUint64(batch[offMaxTimestamp:], uint64(nowMs))
	h.CRC = crc32.Checksum(batch[offAttributes:], castagnoli)
	binary.BigEndian.PutUint32(batch[offCRC:], h.CRC)
	return h
}

// prepareAppend applies the topic's compression.type and
// message.timestamp.type to a validated batch before Append writes it,
// returning the batch to write (batch itself, or a recompressed copy), its
// header and its records' largest timestamp, and the append time for
// LogAppendTime topics (-1 otherwise).
func (p *Partition) prepareAppend(batch []byte, h BatchHeader, maxTs int64, cfg *TopicConfig) ([]byte, BatchHeader, int64, int64, error) {
	batch, h, err := recompress(batch, h, cfg)
	if err != nil {
		return nil, h, maxTs, -1, err
	}
	if !cfg.LogAppendTime || h.IsControl() {
		return batch, h, maxTs, -1, nil
	}
	nowMs := p.now().UnixMilli()
	h = stampAppendTime(batch, h, nowMs)
	return batch, h, nowMs, nowMs, nil
}
