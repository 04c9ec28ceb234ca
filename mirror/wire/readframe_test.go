package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"testing"
)

// A frame's declared length allocates nothing its bytes have not brought:
// a stranger's first frame saying MaxFrame and sending ten bytes costs the
// center tens of KiB, not 64 MiB.
func TestReadFrameAllocatesWithTheBytesThatCame(t *testing.T) {
	frame := binary.BigEndian.AppendUint32(nil, MaxFrame)
	frame = append(frame, typeChunk)
	frame = append(frame, make([]byte, 10)...)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	_, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil)
	runtime.ReadMemStats(&ms)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a cut frame: %v, want io.ErrUnexpectedEOF", err)
	}
	if n := ms.TotalAlloc - before; n > 1<<20 {
		t.Fatalf("a frame declaring %d bytes and sending 10 allocated %d bytes", MaxFrame, n)
	}
}

// A payload larger than the buffer given, read as it grows, is the payload.
func TestReadFrameGrowsToALargePayload(t *testing.T) {
	data := make([]byte, 1<<20+17)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := &Chunk{Topic: "telemetry", Partition: 3, Base: 10, Last: 20, Codec: CodecNone, RawLen: uint32(len(data)), Data: data}
	for _, buf := range [][]byte{nil, make([]byte, 100)} {
		m, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(want.Encode(nil))), buf)
		if err != nil {
			t.Fatal(err)
		}
		c, ok := m.(*Chunk)
		if !ok || !bytes.Equal(c.Data, data) || c.Topic != want.Topic || c.Last != want.Last {
			t.Fatalf("read back %T, not the chunk written", m)
		}
	}
}

// A Heads frame reads back as written, and a count its bytes cannot hold
// is refused before anything is allocated for it.
func TestHeadsRoundTripAndBoundedCount(t *testing.T) {
	want := &Heads{Parts: []Head{{"telemetry", 0, 120, -1}, {"alarms", 3, 7, 1700000000000}}}
	m, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(want.Encode(nil))), nil)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := m.(*Heads)
	if !ok || len(got.Parts) != 2 || got.Parts[0] != want.Parts[0] || got.Parts[1] != want.Parts[1] {
		t.Fatalf("read %#v, want %#v", m, want)
	}
	frame := binary.BigEndian.AppendUint32(nil, 5)
	frame = append(frame, typeHeads)
	frame = binary.BigEndian.AppendUint32(frame, 1<<30)
	if _, _, err := ReadFrame(bufio.NewReader(bytes.NewReader(frame)), nil); !errors.Is(err, ErrMalformed) {
		t.Fatalf("a Heads frame counting 2^30 parts in 4 bytes: %v, want ErrMalformed", err)
	}
}
