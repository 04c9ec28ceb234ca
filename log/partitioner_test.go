package log

import (
	"errors"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partitionerVectors: murmur2 of each key and the partition Kafka's default
// partitioner picks among 1, 3, 4, 16 and 100 partitions. Computed with
// kafkajs 2.x, whose DefaultPartitioner is Java-compatible murmur2:
//
//	npm install kafkajs@2
//	node -e 'const {Partitioners}=require("kafkajs"); const m=require("kafkajs/src/producer/partitioners/default/murmur2");
//	  const p=Partitioners.DefaultPartitioner(); /* for each key k and count n: */
//	  m(k); p({topic:"t", partitionMetadata:[...Array(n).keys()].map(i=>({partitionId:i,leader:0})), message:{key:Buffer.from(k)}})'
//
// The first six are also the vectors of Apache Kafka's UtilsTest.testMurmur2.
var partitionCounts = [5]int32{1, 3, 4, 16, 100}

var partitionerVectors = []struct {
	key        string
	murmur2    int32
	partitions [5]int32
}{
	{"21", -973932308, [5]int32{0, 0, 0, 12, 40}},
	{"foobar", -790332482, [5]int32{0, 0, 2, 14, 66}},
	{"a-little-bit-long-string", -985981536, [5]int32{0, 2, 0, 0, 12}},
	{"a-little-bit-longer-string", -1486304829, [5]int32{0, 2, 3, 3, 19}},
	{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971, [5]int32{0, 2, 1, 13, 77}},
	{"abc", 479470107, [5]int32{0, 0, 3, 11, 7}},
	{"", 275646681, [5]int32{0, 0, 1, 9, 81}},
	{"a", -1563381124, [5]int32{0, 1, 0, 12, 24}},
	{"ab", 316155434, [5]int32{0, 2, 2, 10, 34}},
	{"abcd", -1323649548, [5]int32{0, 2, 0, 4, 0}},
	{"abcde", 461995741, [5]int32{0, 1, 1, 13, 41}},
	{"abcdef", 1870650108, [5]int32{0, 0, 0, 12, 8}},
	{"abcdefg", -346467175, [5]int32{0, 1, 1, 9, 73}},
	{"abcdefgh", -955427363, [5]int32{0, 0, 1, 13, 85}},
	{"abcdefghi", -619679810, [5]int32{0, 0, 2, 14, 38}},
	{"héllo", 614509002, [5]int32{0, 0, 2, 10, 2}},
	{"設備-42", -1278007387, [5]int32{0, 1, 1, 5, 61}},
	{"factory/a/dev1", -439313857, [5]int32{0, 1, 3, 15, 91}},
	{"device-000000042", -39911091, [5]int32{0, 2, 1, 13, 57}},
	{"user-1", 1404122828, [5]int32{0, 2, 0, 12, 28}},
	{"user-2", -324981792, [5]int32{0, 2, 0, 0, 56}},
	{"user-3", 1141442267, [5]int32{0, 2, 3, 11, 67}},
	{"{\"id\":7}", -1038564011, [5]int32{0, 0, 1, 5, 37}},
	{"0", 971027396, [5]int32{0, 2, 0, 4, 96}},
	{"00000000000000000000", -815539498, [5]int32{0, 1, 2, 6, 50}},
}

func TestMurmur2Vectors(t *testing.T) {
	for _, v := range partitionerVectors {
		if got := Murmur2([]byte(v.key)); got != v.murmur2 {
			t.Errorf("Murmur2(%q) = %d, want %d", v.key, got, v.murmur2)
		}
		for i, n := range partitionCounts {
			if got := PartitionForKey([]byte(v.key), n); got != v.partitions[i] {
				t.Errorf("PartitionForKey(%q, %d) = %d, want %d", v.key, n, got, v.partitions[i])
			}
		}
	}
}

// TestPartitionerMatchesFranzGo checks a third witness: franz-go's default
// (sticky key) partitioner, which Kafka Go clients use.
func TestPartitionerMatchesFranzGo(t *testing.T) {
	fg := kgo.StickyKeyPartitioner(nil)
	for _, v := range partitionerVectors {
		for _, n := range partitionCounts {
			tp := fg.ForTopic("t")
			want := tp.Partition(&kgo.Record{Key: []byte(v.key)}, int(n))
			if got := PartitionForKey([]byte(v.key), n); int(got) != want {
				t.Errorf("key %q over %d: ferry %d, franz-go %d", v.key, n, got, want)
			}
		}
	}
}

func TestStickyPartitionForNullKeys(t *testing.T) {
	var p Partitioner
	first := p.Partition(nil, 8)
	for i := 0; i < 10; i++ {
		if got := p.Partition(nil, 8); got != first {
			t.Fatalf("null-key partition moved within a batch: %d then %d", first, got)
		}
	}
	seen := map[int32]bool{}
	prev := first
	for i := 0; i < 8; i++ {
		p.NextBatch()
		got := p.Partition(nil, 8)
		if got == prev {
			t.Fatalf("NextBatch kept partition %d", got)
		}
		seen[got], prev = true, got
	}
	if len(seen) != 8 {
		t.Fatalf("8 batches covered %d of 8 partitions", len(seen))
	}
	if got, want := p.Partition([]byte("abc"), 16), int32(11); got != want {
		t.Fatalf("keyed record: partition %d, want %d", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { p.Partition([]byte("device-000000042"), 16); p.Partition(nil, 16) }); allocs != 0 {
		t.Fatalf("%v allocations per call", allocs)
	}
}

func TestValidateTopicName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"user-events", true},
		{"a.b_c-D9", true},
		{strings.Repeat("x", 249), true},
		{"", false},
		{".", false},
		{"..", false},
		{strings.Repeat("x", 250), false},
		{"has space", false},
		{"a/b", false},
		{"caf\u00e9", false},
		{"$devices", false},
		{"tab\t", false},
	} {
		err := ValidateTopicName(tc.name)
		if tc.ok != (err == nil) {
			t.Errorf("ValidateTopicName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidTopic) {
			t.Errorf("ValidateTopicName(%q) = %v, not ErrInvalidTopic", tc.name, err)
		}
	}
	if !TopicCollides("a.b", "a_b") || TopicCollides("a.b", "a.b") || TopicCollides("ab", "a_b") {
		t.Fatal("TopicCollides")
	}
}

// FuzzMurmur2 compares Murmur2 with a plain transcription of Kafka's Java
// code, arithmetic in int32 with explicit unsigned shifts.
func FuzzMurmur2(f *testing.F) {
	for _, v := range partitionerVectors {
		f.Add([]byte(v.key))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := Murmur2(data), javaMurmur2(data); got != want {
			t.Fatalf("Murmur2(%x) = %d, reference %d", data, got, want)
		}
		if p := PartitionForKey(data, 7); p < 0 || p >= 7 {
			t.Fatalf("partition %d out of range", p)
		}
	})
}

func javaMurmur2(data []byte) int32 {
	length := int32(len(data))
	seed := int32(-1756908916) // 0x9747b28c
	m := int32(0x5bd1e995)
	ushr := func(x int32, n uint) int32 { return int32(uint32(x) >> n) }
	h := seed ^ length
	length4 := length / 4
	for i := int32(0); i < length4; i++ {
		i4 := i * 4
		k := int32(data[i4]) + int32(data[i4+1])<<8 + int32(data[i4+2])<<16 + int32(data[i4+3])<<24
		k *= m
		k ^= ushr(k, 24)
		k *= m
		h *= m
		h ^= k
	}
	switch length % 4 {
	case 3:
		h ^= int32(data[(length&^3)+2]) << 16
		fallthrough
	case 2:
		h ^= int32(data[(length&^3)+1]) << 8
		fallthrough
	case 1:
		h ^= int32(data[length&^3])
		h *= m
	}
	h ^= ushr(h, 13)
	h *= m
	h ^= ushr(h, 15)
	return h
}

func BenchmarkPartitionForKey(b *testing.B) {
	key := []byte("device-000000042")
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		PartitionForKey(key, 16)
	}
}
