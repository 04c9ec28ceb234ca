package kafka

import (
	"errors"
	"math/rand"
	"reflect"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// randomFill sets every exported field of v to a random value: numbers,
// strings of 0 to 200 bytes (a length over 127 takes a two-byte uvarint),
// nullable strings and byte slices nil or not, arrays of 0 to 3 elements (or
// nil), and unknown tagged fields in some structs.
func randomFill(r *rand.Rand, v reflect.Value, depth int) {
	if depth > 8 {
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		if tags, ok := v.Addr().Interface().(*kmsg.Tags); ok {
			for n := r.Intn(4) * r.Intn(2); n > 0; n-- {
				val := make([]byte, r.Intn(140))
				r.Read(val)
				tags.Set(uint32(100+r.Intn(1<<20)), val)
			}
			return
		}
		for i := 0; i < v.NumField(); i++ {
			if f := v.Field(i); f.CanSet() && v.Type().Field(i).Name != "Version" {
				randomFill(r, f, depth+1)
			}
		}
	case reflect.Bool:
		v.SetBool(r.Intn(2) == 0)
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(r.Uint64()))
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(r.Uint64())
	case reflect.Float64:
		v.SetFloat(r.Float64())
	case reflect.String:
		v.SetString(randomString(r))
	case reflect.Array: // a UUID
		for i := 0; i < v.Len(); i++ {
			v.Index(i).SetUint(uint64(r.Intn(256)))
		}
	case reflect.Pointer:
		if r.Intn(3) == 0 {
			return // null
		}
		e := reflect.New(v.Type().Elem())
		randomFill(r, e.Elem(), depth+1)
		v.Set(e)
	case reflect.Slice:
		if r.Intn(5) == 0 {
			return // null, or empty where the version cannot say null
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			b := make([]byte, r.Intn(300))
			r.Read(b)
			v.SetBytes(b)
			return
		}
		n := r.Intn(4)
		s := reflect.MakeSlice(v.Type(), n, n)
		for i := 0; i < n; i++ {
			e := s.Index(i)
			if d, ok := e.Addr().Interface().(interface{ Default() }); ok {
				d.Default()
			}
			randomFill(r, e, depth+1)
		}
		v.Set(s)
	}
}

func randomString(r *rand.Rand) string {
	n := r.Intn(12)
	if r.Intn(8) == 0 {
		n = 100 + r.Intn(100)
	}
	return strings.Repeat("x", n)
}

// countUnknownTags sums the unknown tagged fields kmsg kept in a decoded
// request, at every depth.
func countUnknownTags(v reflect.Value) int {
	n := 0
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			n += countUnknownTags(v.Elem())
		}
	case reflect.Struct:
		if v.CanAddr() {
			if tags, ok := v.Addr().Interface().(*kmsg.Tags); ok {
				return tags.Len()
			}
		}
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				n += countUnknownTags(v.Field(i))
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.Uint8 {
			for i := 0; i < v.Len(); i++ {
				n += countUnknownTags(v.Index(i))
			}
		}
	}
	return n
}

// TestPrepassAcceptsWhatKmsgEncodes: for every advertised key and version,
// flexible or not, random requests encoded by kmsg are accepted by the pre-pass,
// which consumes exactly the body; a body cut short anywhere is refused.
func TestPrepassAcceptsWhatKmsgEncodes(t *testing.T) {
	r := rand.New(rand.NewSource(13))
	served := servedVersions()
	if len(served) < 100 {
		t.Fatalf("only %d versions advertised", len(served))
	}
	for _, kv := range served {
		key, version := kv[0], kv[1]
		for i := 0; i < 200; i++ {
			req := kmsg.RequestForKey(key)
			randomFill(r, reflect.ValueOf(req).Elem(), 0)
			req.SetVersion(version)
			body := req.AppendTo(nil)
			rest, err := prepassBody(key, version, body, 0)
			if err != nil || len(rest) != 0 {
				t.Fatalf("%s v%d: pre-pass of a %d-byte body kmsg encoded: %v, %d bytes left\n%x",
					kmsg.NameForKey(key), version, len(body), err, len(rest), body)
			}
			if i%20 == 0 {
				for cut := 0; cut < len(body); cut++ {
					if _, err := prepassBody(key, version, body[:cut], 0); err == nil {
						t.Fatalf("%s v%d: body cut at %d of %d accepted", kmsg.NameForKey(key), version, cut, len(body))
					}
				}
			}
		}
	}
}

// TestPrepassRefusesTooManyTags: a request carrying more than maxFrameTags
// tagged fields, in its body alone or in its header and body together, is
// refused before kmsg decodes it, counted as a malformed body; one carrying
// exactly maxFrameTags decodes.
func TestPrepassRefusesTooManyTags(t *testing.T) {
	build := func(headerTags, bodyTags int) []byte {
		req := kmsg.NewPtrMetadataRequest()
		req.SetVersion(12)
		for k := 0; k < bodyTags; k++ {
			req.UnknownTags.Set(uint32(1000+k), nil)
		}
		frame := encodeRequest(req, 1, "c")
		header := frame[:2+2+4+2+1]
		rest := frame[len(header)+1:] // past the header's empty tag section
		var tags []byte               // the header's tag section: a uvarint count, then empty fields
		u := uint32(headerTags)
		for u >= 0x80 {
			tags = append(tags, byte(u)|0x80)
			u >>= 7
		}
		tags = append(tags, byte(u))
		for k := 0; k < headerTags; k++ {
			tags = append(tags, byte(k%100), 0)
		}
		return append(append(append([]byte(nil), header...), tags...), rest...)
	}
	for _, c := range []struct {
		header, body int
		ok           bool
	}{
		{0, maxFrameTags, true},
		{maxFrameTags / 2, maxFrameTags / 2, true},
		{0, maxFrameTags + 1, false},
		{maxFrameTags/2 + 1, maxFrameTags / 2, false},
		{maxFrameTags + 1, 0, false},
	} {
		_, req, _, reason, err := decodeRequest(build(c.header, c.body), nil)
		if c.ok && (err != nil || req == nil) {
			t.Fatalf("%d header and %d body tags: refused: %v", c.header, c.body, err)
		}
		if !c.ok {
			if err == nil {
				t.Fatalf("%d header and %d body tags: decoded", c.header, c.body)
			}
			if c.header <= maxFrameTags && (reason != "body" || !errors.Is(err, errTooManyTags)) {
				t.Fatalf("%d header and %d body tags: refused as %q: %v", c.header, c.body, reason, err)
			}
		}
	}
}

// TestPrepassBoundsWhatKmsgDecodes runs every hostile frame and every
// FuzzRequest seed through decoding: nothing panics, and whenever a frame at
// a flexible version decodes, kmsg kept no more unknown tagged fields than
// maxFrameTags (the walk and kmsg read the same structure).
func TestPrepassBoundsWhatKmsgDecodes(t *testing.T) {
	flexible := 0
	for _, f := range allHostileFrames(t) {
		rq, req, _, _, err := decodeRequest(f.frame, nil)
		if err != nil || req == nil || !req.IsFlexible() {
			continue
		}
		flexible++
		if n := countUnknownTags(reflect.ValueOf(req)); n > maxFrameTags {
			t.Fatalf("%s: %s v%d decoded with %d unknown tagged fields", f.name, kmsg.NameForKey(rq.key), rq.version, n)
		}
	}
	if flexible == 0 {
		t.Fatal("no flexible frame decoded")
	}
}

// TestPrepassAcceptsClientFrames: the requests real clients sent
// (franz-go, kcat: the client-* FuzzRequest seeds, captured by
// TestCaptureClientRequests) all pass the pre-pass and decode.
func TestPrepassAcceptsClientFrames(t *testing.T) {
	n := 0
	for _, f := range committedSeeds(t) {
		if !strings.HasPrefix(f.name, "seed client-") || strings.Contains(f.name, " max-uvarint") {
			continue
		}
		n++
		if _, req, early, _, err := decodeRequest(f.frame, nil); err != nil || (req == nil && early == nil) {
			t.Errorf("%s: %v", f.name, err)
		}
	}
	if n < 10 {
		t.Fatalf("only %d client frames", n)
	}
}
