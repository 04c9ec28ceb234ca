package wire

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzDecodeFrame feeds arbitrary bytes to the frame reader and decoder:
// they decode or fail with ErrMalformed (or a short read), never panic or
// allocate past the input; what decodes re-encodes to the same bytes.
func FuzzDecodeFrame(f *testing.F) {
	for _, m := range []Message{
		&Hello{Version: Version, Edge: "gw1", Token: "t", Parts: []PartRef{{"telemetry", 0, 2}, {"telemetry", 1, 2}}},
		&Welcome{Resume: []Resume{{"telemetry", 0, -1, -1, -1}, {"telemetry", 1, 42, 100, 180}}},
		&Chunk{Topic: "telemetry", Partition: 1, Base: 42, Last: 51, Flags: FlagTail, Codec: CodecZstd, RawLen: 3, CRC: 7, Data: []byte{1, 2, 3}},
		&Gap{Topic: "telemetry", Partition: 1, From: 52, To: 99, Reason: "max.disk.bytes"},
		&Ack{Topic: "telemetry", Partition: 1, Next: 52, Copied: 40},
		&Error{Message: "wrong token"},
		&Ping{},
		&Heads{Parts: []Head{{"telemetry", 0, 120, -1}, {"telemetry", 1, 99, 1700000000000}}},
	} {
		f.Add(m.Encode(nil))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 1})
	f.Add([]byte{0, 0, 0, 9, 1, 0, 1, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(data)), nil)
		if err != nil {
			return
		}
		n := 4 + int(uint32(data[0])<<24|uint32(data[1])<<16|uint32(data[2])<<8|uint32(data[3]))
		if got := m.Encode(nil); !bytes.Equal(got, data[:n]) {
			t.Fatalf("re-encoded %x, read %x", got, data[:n])
		}
	})
}
