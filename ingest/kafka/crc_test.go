package kafka

import (
	"encoding/binary"
	"hash/crc32"
)

// recomputeCRC fixes a RecordBatch's CRC-32C after its header was edited.
func recomputeCRC(b []byte) {
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], crc32.MakeTable(crc32.Castagnoli)))
}
