package kafka

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sys/unix"
)

// Decoding cost of hostile frames (issue 13): a frame of at most 64 KiB must
// never cost more than a bounded amount of work to decode or refuse, at any
// API key and version this package serves, with or without SASL. kmsg
// v1.15.0 looped on a tagged-field count after a failed read (4 billion
// iterations, seconds of CPU for a 30-byte frame), and so did the request
// header's tag count read through kmsg.SkipTags.

// maxHostileFrame is the largest frame the tests and benchmark build.
const maxHostileFrame = 64 << 10

// decodeBudget is the CPU a single frame may cost in the test: generous for
// a loaded 2-core machine under the race detector, and far below what a loop
// on a 32-bit count costs (seconds).
const decodeBudget = 50 * time.Millisecond

// threadCPU returns the CPU time of the calling OS thread; the caller holds
// runtime.LockOSThread. CLOCK_THREAD_CPUTIME_ID counts to the nanosecond
// (getrusage's RUSAGE_THREAD moves in scheduler ticks).
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// hostileFrame is one frame with a name saying how it was built.
type hostileFrame struct {
	name  string
	frame []byte
}

// servedVersions lists every API key and version in the handler registry,
// from which ApiVersions is derived (every server advertises a subset).
func servedVersions() (out [][2]int16) {
	keys := make([]int16, 0, len(handlers))
	for k := range handlers {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	for _, k := range keys {
		for v := handlers[k].min; v <= handlers[k].max; v++ {
			out = append(out, [2]int16{k, v})
		}
	}
	return out
}

// filledRequest returns key's request at version with one element in every
// array, at every depth, and a short value in every string, so its encoding
// has a count at every place the version has one.
func filledRequest(key, version int16) kmsg.Request {
	req := kmsg.RequestForKey(key)
	fill(reflect.ValueOf(req).Elem(), 0)
	req.SetVersion(version)
	return req
}

func fill(v reflect.Value, depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if f := v.Field(i); f.CanSet() && v.Type().Field(i).Name != "Version" {
				fill(f, depth+1)
			}
		}
	case reflect.String:
		v.SetString("t")
	case reflect.Pointer:
		if v.Type().Elem().Kind() == reflect.String {
			s := "t"
			v.Set(reflect.ValueOf(&s))
		}
	case reflect.Slice:
		e := reflect.New(v.Type().Elem())
		if d, ok := e.Interface().(interface{ Default() }); ok {
			d.Default()
		}
		fill(e.Elem(), depth+1)
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, 1), e.Elem()))
	}
}

// hostileTails are what is put at a position of a valid encoding: the
// largest counts, a count of exactly the bytes left, and tagged fields with
// distinct keys, each (but the first) padded to fill the frame.
func hostileTails(room int) []hostileFrame {
	maxUvarint := []byte{0xff, 0xff, 0xff, 0xff, 0x0f}
	padWith := func(prefix []byte, b byte) []byte {
		if room <= len(prefix) {
			return prefix
		}
		return append(prefix, bytes.Repeat([]byte{b}, room-len(prefix))...)
	}
	pad := func(prefix []byte) []byte { return padWith(prefix, 0) }
	left := room - 5
	if left < 0 {
		left = 0
	}
	exact := binary.AppendUvarint(nil, uint64(left)+1) // a compact count of every byte left
	int32Exact := binary.BigEndian.AppendUint32(nil, uint32(room-4))
	tags := binary.AppendUvarint(nil, 1<<31)
	for k := uint64(0); len(tags)+4 <= room; k++ {
		tags = binary.AppendUvarint(tags, k)
		tags = append(tags, 0)
	}
	return []hostileFrame{
		{"max-uvarint", maxUvarint},
		{"max-uvarint-padded", pad(maxUvarint)},
		{"compact-count-of-bytes-left", pad(exact)},
		// 0x01 is an empty compact string or array, and a tagged-field
		// count of one: the elements of such an array are valid.
		{"compact-count-of-bytes-left-of-ones", padWith(exact, 1)},
		{"max-int32-padded", pad([]byte{0x7f, 0xff, 0xff, 0xff})},
		{"int32-count-of-bytes-left", pad(int32Exact)},
		{"distinct-tags", tags},
	}
}

// hostileFramesFor builds, for one key and version, the frames that truncate
// a valid request at every position and that put each hostile tail there, in
// the header's tagged fields (flexible versions) and in the body.
func hostileFramesFor(key, version int16) []hostileFrame {
	req := filledRequest(key, version)
	header := binary.BigEndian.AppendUint16(nil, uint16(key))
	header = binary.BigEndian.AppendUint16(header, uint16(version))
	header = binary.BigEndian.AppendUint32(header, 7)
	header = append(header, 0, 1, 'c')
	body := req.AppendTo(nil)
	var out []hostileFrame
	at := func(where string, prefix []byte) {
		out = append(out, hostileFrame{fmt.Sprintf("%s truncated at %s", kmsg.NameForKey(key), where), prefix})
		for _, t := range hostileTails(maxHostileFrame - len(prefix)) {
			f := append(append([]byte(nil), prefix...), t.frame...)
			out = append(out, hostileFrame{fmt.Sprintf("%s %s at %s", kmsg.NameForKey(key), t.name, where), f})
		}
	}
	if req.IsFlexible() {
		at("header tags", header)
		header = append(header, 0)
	}
	for p := 0; p <= len(body); p++ {
		at("body byte "+strconv.Itoa(p), append(append([]byte(nil), header...), body[:p]...))
	}
	return out
}

// committedSeeds reads the FuzzRequest corpus files in testdata.
func committedSeeds(t testing.TB) []hostileFrame {
	paths, err := filepath.Glob("testdata/fuzz/FuzzRequest/*")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no FuzzRequest seeds: %v", err)
	}
	var out []hostileFrame
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			t.Fatalf("%s: not a fuzz corpus file", p)
		}
		q, ok := strings.CutPrefix(lines[1], "[]byte(")
		q, ok2 := strings.CutSuffix(q, ")")
		frame, err := strconv.Unquote(q)
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: cannot read the []byte: %v", p, err)
		}
		name := "seed " + filepath.Base(p)
		out = append(out, hostileFrame{name, []byte(frame)})
		for i := 8; i < len(frame); i++ { // every position past the fixed header
			out = append(out, hostileFrame{fmt.Sprintf("%s max-uvarint at byte %d", name, i),
				append([]byte(frame[:i]), 0xff, 0xff, 0xff, 0xff, 0x0f)})
		}
	}
	return out
}

// allHostileFrames is every frame the test decodes.
func allHostileFrames(t testing.TB) []hostileFrame {
	out := committedSeeds(t)
	for _, kv := range servedVersions() {
		out = append(out, hostileFramesFor(kv[0], kv[1])...)
	}
	return out
}

// maxAllocPerFrameByte bounds what decoding may allocate per byte of the
// frame: kmsg sizes a slice by a count the pre-pass checked against the
// bytes left times the element's least encoded size, so an element larger in
// memory than on the wire amplifies. Measured worst: 8 (512 KiB for a 64 KiB
// CreatePartitions of 16,000 empty assignments; 16 under the race detector,
// where kmsg's append of a made slice allocates both); 40 before the pre-pass
// (2.6 MB for a Fetch of distinct unknown tagged fields, a map entry each).
const maxAllocPerFrameByte = 32

// TestHostileFramesDecodeWithinBudget decodes every hostile frame, without
// SASL and as a connection that has not authenticated, measuring the CPU of
// each decode on its own thread and the bytes it allocates: a frame over
// decodeBudget or over maxAllocPerFrameByte per byte fails the test.
func TestHostileFramesDecodeWithinBudget(t *testing.T) {
	frames := allHostileFrames(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var ms runtime.MemStats
	for _, mode := range []struct {
		name      string
		mayDecode func(int16) bool
	}{{"without SASL", nil}, {"before SASL authentication", preAuthAPI}} {
		var worst time.Duration
		var worstAlloc uint64
		var worstName, worstAllocName string
		for _, f := range frames {
			if len(f.frame) > maxHostileFrame {
				t.Fatalf("%s: %d bytes, over %d", f.name, len(f.frame), maxHostileFrame)
			}
			runtime.ReadMemStats(&ms)
			allocated := ms.TotalAlloc
			began := threadCPU()
			decodeRequest(f.frame, mode.mayDecode)
			took := threadCPU() - began
			runtime.ReadMemStats(&ms)
			allocated = ms.TotalAlloc - allocated
			for retry := 0; retry < 2 && took > decodeBudget; retry++ {
				// A GC cycle's assist on a loaded machine is not the
				// frame's cost: the least of three decides.
				began = threadCPU()
				decodeRequest(f.frame, mode.mayDecode)
				took = min(took, threadCPU()-began)
			}
			if took > decodeBudget {
				t.Fatalf("%s: %s took %v of CPU to decode, over %v", mode.name, f.name, took, decodeBudget)
			}
			if limit := uint64(maxAllocPerFrameByte * max(len(f.frame), 1024)); allocated > limit {
				t.Fatalf("%s: %s (%d bytes) allocated %d bytes to decode, over %d", mode.name, f.name, len(f.frame), allocated, limit)
			}
			if took > worst {
				worst, worstName = took, f.name
			}
			if allocated > worstAlloc {
				worstAlloc, worstAllocName = allocated, f.name
			}
		}
		t.Logf("%s: %d frames, worst CPU %v (%s), worst allocation %d bytes (%s)", mode.name, len(frames), worst, worstName, worstAlloc, worstAllocName)
	}
}

// BenchmarkDecodeHostile decodes every hostile frame of every API key and
// version once per iteration and reports the worst frame's decoding cost as
// worst-ns/frame: the CPU time of the decoding thread (so waiting for a core
// on a loaded machine does not count), the least over the iterations (so
// neither does a GC assist that happened to fall on it); the target is 1 ms.
// Run with -benchtime=5x or more.
func BenchmarkDecodeHostile(b *testing.B) {
	frames := allHostileFrames(b)
	least := make([]time.Duration, len(frames))
	for i := range least {
		least[i] = time.Hour
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		for i, f := range frames {
			began := threadCPU()
			decodeRequest(f.frame, nil)
			if took := threadCPU() - began; took < least[i] {
				least[i] = took
			}
		}
	}
	b.StopTimer()
	worst := 0
	for i := range least {
		if least[i] > least[worst] {
			worst = i
		}
	}
	b.ReportMetric(float64(len(frames)), "frames")
	b.ReportMetric(float64(least[worst].Nanoseconds()), "worst-ns/frame")
	var byKind []string
	kinds := []string{"seed", "truncated"}
	for _, t := range hostileTails(0) {
		kinds = append(kinds, t.name+" ")
	}
	for _, k := range kinds {
		var w time.Duration
		var name string
		for i, f := range frames {
			if strings.Contains(f.name, k) && least[i] > w {
				w, name = least[i], f.name
			}
		}
		byKind = append(byKind, fmt.Sprintf("%s %v (%s)", strings.TrimSpace(k), w, name))
	}
	b.Logf("worst frame: %s, %v; worst of each kind: %s", frames[worst].name, least[worst], strings.Join(byKind, "; "))
}

// TestPlainMessageOfNULsAllocatesLittle: a PLAIN message (up to the 64 KiB
// a frame may carry before authentication) of NULs alone is refused without
// a slice header per NUL (1.5 MB when it was split in full).
func TestPlainMessageOfNULsAllocatesLittle(t *testing.T) {
	ss, err := newSASLServer([]string{SASLPlain}, memCreds{"alice": "s3cret"})
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, preAuthMaxRequestBytes)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.TotalAlloc
	if _, err := ss.plain(msg); err == nil {
		t.Fatal("a message of NULs authenticated")
	}
	runtime.ReadMemStats(&ms)
	if n := ms.TotalAlloc - before; n > 4<<10 {
		t.Fatalf("refusing %d NULs allocated %d bytes", len(msg), n)
	}
}
