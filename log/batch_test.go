package log

import (
	"errors"
	"testing"
)

// ParseBatchHeader checks a batch's framing as ParseBatch does, and only
// the CRC is left out.
func TestParseBatchHeaderLeavesOutOnlyTheCRC(t *testing.T) {
	good := testBatch(3, 1000, "a")
	want, err := ParseBatch(good)
	if err != nil {
		t.Fatal(err)
	}
	damaged := append([]byte(nil), good...)
	damaged[len(damaged)-1] ^= 0xff // a record byte: the CRC no longer holds
	if _, err := ParseBatch(damaged); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("ParseBatch of a damaged batch: %v, want ErrCorruptBatch", err)
	}
	if h, err := ParseBatchHeader(damaged); err != nil || h != want {
		t.Fatalf("ParseBatchHeader of a damaged batch: %+v, %v; want %+v", h, err, want)
	}
	badMagic := append([]byte(nil), good...)
	badMagic[offMagic] = 1
	for name, b := range map[string][]byte{"truncated": good[:len(good)-1], "header only": good[:batchHeaderSize-1], "magic 1": badMagic} {
		if _, err := ParseBatchHeader(b); !errors.Is(err, ErrCorruptBatch) {
			t.Errorf("%s: ParseBatchHeader gave %v, want ErrCorruptBatch", name, err)
		}
	}
}
