package mirror

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

// FuzzDecodeFrame feeds arbitrary bytes to the frame reader and decoder:
// they decode or fail with ErrMalformed (or a short read), never panic or
// allocate past the input; what decodes re-encodes to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range []interface{ encode([]byte) []byte }{
		&hello{Version: 1, Edge: "gw1", Token: "t", Parts: []partRef{{"telemetry", 0, 2}, {"telemetry", 1, 2}}},
		&welcome{Resume: []resume{{"telemetry", 0, -1}, {"telemetry", 1, 42}}},
		&chunk{Topic: "telemetry", Partition: 1, Base: 42, Last: 51, Codec: codecZstd, RawLen: 3, CRC: 7, Data: []byte{1, 2, 3}},
		&ack{Topic: "telemetry", Partition: 1, Next: 52},
		&errorFrame{Message: "wrong token"},
	} {
		f.Add(m.encode(nil))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 9, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := readFrame(bufio.NewReader(bytes.NewReader(data)), nil)
		if err != nil {
			return
		}
		enc, ok := m.(interface{ encode([]byte) []byte })
		if !ok {
			t.Fatalf("decoded %T, which cannot encode", m)
		}
		n := 4 + int(uint32(data[0])<<24|uint32(data[1])<<16|uint32(data[2])<<8|uint32(data[3]))
		if got := enc.encode(nil); !bytes.Equal(got, data[:n]) {
			t.Fatalf("re-encoded %x, read %x", got, data[:n])
		}
	})
}
