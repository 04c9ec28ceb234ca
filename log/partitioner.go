package log

import "sync/atomic"

// Murmur2 is Apache Kafka's murmur2 hash (Utils.murmur2): 32-bit MurmurHash2
// with seed 0x9747b28c, reading little-endian 4-byte words, as a Java int.
func Murmur2(data []byte) int32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	n := len(data)
	h := seed ^ uint32(n)
	words := n &^ 3
	for i := 0; i < words; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n & 3 {
	case 3:
		h ^= uint32(data[words+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[words+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[words])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// PartitionForKey is Kafka's default partitioner for a non-null key:
// toPositive(murmur2(key)) % partitions, where toPositive clears the sign
// bit (it is not an absolute value). A Kafka client producing with the same
// key and ferry's own ingest pick the same partition.
func PartitionForKey(key []byte, partitions int32) int32 {
	return (Murmur2(key) & 0x7fffffff) % partitions
}

// Partitioner picks partitions the way Kafka's producers do: by
// PartitionForKey for a keyed record, and for a record with a null key a
// sticky partition, kept for a whole batch so keyless records fill batches,
// and moved on by NextBatch. It is safe for concurrent use and does not
// allocate.
type Partitioner struct {
	sticky atomic.Uint32
}

// Partition returns the partition for key among partitions (> 0).
func (p *Partitioner) Partition(key []byte, partitions int32) int32 {
	if key != nil {
		return PartitionForKey(key, partitions)
	}
	return int32(p.sticky.Load() % uint32(partitions))
}

// NextBatch moves the sticky partition for null keys on, round-robin, so
// consecutive batches of keyless records spread over every partition.
func (p *Partitioner) NextBatch() { p.sticky.Add(1) }
