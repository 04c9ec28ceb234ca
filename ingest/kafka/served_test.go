package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// batchBytes is a RecordBatch header for offsets base..base+n-1 (the
// count walks headers only, so no records are needed).
func batchBytes(base int64, n int32) []byte {
	b := kmsg.RecordBatch{FirstOffset: base, LastOffsetDelta: n - 1, Magic: 2, NumRecords: n}
	b.Length = int32(len(b.AppendTo(nil)) - 12) // the bytes after the length field
	return b.AppendTo(nil)
}

func TestRecordsFrom(t *testing.T) {
	two := append(batchBytes(0, 5), batchBytes(5, 5)...)
	for _, c := range []struct {
		name   string
		data   []byte
		offset int64
		want   int64
	}{
		{"empty", nil, 0, 0},
		{"one batch from its start", batchBytes(0, 5), 0, 5},
		{"one batch from inside it", batchBytes(0, 5), 3, 2},
		{"two batches from inside the first", two, 3, 7},
		{"a cut second batch is not counted", two[:len(two)-10], 3, 2},
		{"an offset before the batch", batchBytes(100, 4), 0, 4},
	} {
		if got := recordsFrom(c.data, c.offset); got != c.want {
			t.Errorf("%s: %d records, want %d", c.name, got, c.want)
		}
	}
}
