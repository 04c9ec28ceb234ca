package kafka

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The pre-pass (issue 13): before kmsg decodes the body of a request at a
// flexible version, ferry walks its wire structure from a schema of its own
// and refuses a frame that is malformed or carries more tagged fields than
// any client sends. kmsg checks each count against the bytes left, but keeps
// every unknown tagged field in a map (kmsg.Tags): 64 KiB of distinct tags,
// about 21,000 map insertions, cost over a millisecond of CPU and 2.6 MB.
// The walk allocates nothing, never recurses on what the wire says (only
// down the schema, at most four deep), and every loop consumes at least one
// byte per turn, so its cost is linear in the frame.
//
// Each schema is written from Kafka's published message definitions
// (clients/src/main/resources/common/message/*Request.json in apache/kafka),
// for the flexible versions this package advertises only: a version that is
// not flexible has no compact encodings and no tagged fields, and kmsg's own
// checks bound its decoding. TestPrepassAcceptsWhatKmsgEncodes holds each
// schema against kmsg's encoding of random requests at every such version.

// maxFrameTags caps the tagged fields, known and unknown, a request may carry
// in its header and body together. The request header has no known tagged
// field, and at the versions ferry advertises a request body has at most one
// (Fetch v12's ClusterId); Kafka puts at most a handful in a struct and real
// clients send almost none. 256 leaves two orders of magnitude for future
// clients while bounding kmsg's map work for a frame to a few microseconds.
const maxFrameTags = 256

// errTooManyTags is returned for a frame over maxFrameTags.
var errTooManyTags = errors.New("too many tagged fields")

// wireKind is how a schema field is encoded at a flexible version.
type wireKind uint8

const (
	wireFixed   wireKind = iota // size bytes: int8, bool, int16, int32, int64, uuid
	wireString                  // compact string: uvarint length+1, then the bytes; 0 (null) if nullable
	wireBytes                   // compact bytes or records: null taken as empty, as kmsg does
	wireArray                   // compact (nullable) array of fixed-width (size) or string (size 0) elements
	wireStructs                 // compact (nullable) array of structs, each ending with its tagged fields
)

// wireField is one field of a request schema, present at versions min..max.
type wireField struct {
	name     string
	kind     wireKind
	size     int  // wireFixed: the width; wireArray: the element's width, 0 for strings
	nullable bool // wireString: null is allowed
	min, max int16
	fields   []wireField // wireStructs: the element's fields
	least    int         // wireStructs compiled for a version: the fewest bytes an element takes
}

// wireSchema is a request's body at flexible versions min..max: its fields
// at each version (byVersion[version-min]), only those present.
type wireSchema struct {
	min, max  int16
	byVersion [][]wireField
}

// compile returns the fields present at version, with each struct array's
// least element size: a byte for the tagged-field count, each fixed field's
// width, a byte for each other field.
func compile(fields []wireField, version int16) []wireField {
	var out []wireField
	for _, f := range fields {
		if version < f.min || version > f.max {
			continue
		}
		if f.kind == wireStructs {
			f.fields = compile(f.fields, version)
			f.least = 1
			for _, g := range f.fields {
				if g.kind == wireFixed {
					f.least += g.size
				} else {
					f.least++
				}
			}
		}
		out = append(out, f)
	}
	return out
}

// requestSchemas is parsed from requestSchemaText at init. The grammar:
// fields separated by spaces, each Name:type with an optional @versions
// (@7+, @-10, @8-10; every flexible version when absent). Types: 1, 2, 4, 8,
// 16 (fixed width: int8 and bool, int16, int32, int64, uuid), s and s?
// (compact string, s? nullable: Kafka, and kmsg, refuse a null string
// elsewhere), b (compact bytes or records), []4 and []s (compact arrays of
// int32 or strings), [fields] (a compact array of structs). Arrays may be
// null, as kmsg takes null for empty. A struct ends with its tagged fields;
// known tags are skipped like unknown ones, as kmsg reads them from the
// tag's own bytes.
var requestSchemas = map[int16]wireSchema{}

var requestSchemaText = map[int16]struct {
	min, max int16
	text     string
}{
	0:  {9, 11, "TransactionalID:s? Acks:2 TimeoutMillis:4 Topics:[Topic:s Partitions:[Partition:4 Records:b]]"},
	1:  {12, 12, "ReplicaID:4 MaxWaitMillis:4 MinBytes:4 MaxBytes:4 IsolationLevel:1 SessionID:4 SessionEpoch:4 Topics:[Topic:s Partitions:[Partition:4 CurrentLeaderEpoch:4 FetchOffset:8 LastFetchedEpoch:4 LogStartOffset:8 PartitionMaxBytes:4]] Forgotten:[Topic:s Partitions:[]4] Rack:s"},
	2:  {6, 8, "ReplicaID:4 IsolationLevel:1 Topics:[Topic:s Partitions:[Partition:4 CurrentLeaderEpoch:4 Timestamp:8]]"},
	3:  {9, 12, "Topics:[TopicID:16@10+ Topic:s?] AllowAutoTopicCreation:1 IncludeClusterAuthorizedOperations:1@-10 IncludeTopicAuthorizedOperations:1"},
	8:  {8, 8, "Group:s Generation:4 MemberID:s InstanceID:s? Topics:[Topic:s Partitions:[Partition:4 Offset:8 LeaderEpoch:4 Metadata:s?]]"},
	9:  {6, 8, "Group:s@-7 Topics:[Topic:s Partitions:[]4]@-7 Groups:[Group:s Topics:[Topic:s Partitions:[]4]]@8+ RequireStable:1@7+"},
	10: {3, 4, "CoordinatorKey:s@-3 CoordinatorType:1 CoordinatorKeys:[]s@4+"},
	11: {6, 7, "Group:s SessionTimeoutMillis:4 RebalanceTimeoutMillis:4 MemberID:s InstanceID:s? ProtocolType:s Protocols:[Name:s Metadata:b]"},
	12: {4, 4, "Group:s Generation:4 MemberID:s InstanceID:s?"},
	13: {4, 4, "Group:s Members:[MemberID:s InstanceID:s?]"},
	14: {4, 5, "Group:s Generation:4 MemberID:s InstanceID:s? ProtocolType:s?@5+ Protocol:s?@5+ GroupAssignment:[MemberID:s MemberAssignment:b]"},
	15: {5, 5, "Groups:[]s IncludeAuthorizedOperations:1"},
	16: {3, 4, "StatesFilter:[]s@4+"},
	18: {3, 3, "ClientSoftwareName:s ClientSoftwareVersion:s"},
	19: {5, 7, "Topics:[Topic:s NumPartitions:4 ReplicationFactor:2 ReplicaAssignment:[Partition:4 Replicas:[]4] Configs:[Name:s Value:s?]] TimeoutMillis:4 ValidateOnly:1"},
	20: {4, 6, "TopicNames:[]s@-5 Topics:[Topic:s? TopicID:16]@6+ TimeoutMillis:4"},
	22: {2, 4, "TransactionalID:s? TransactionTimeoutMillis:4 ProducerID:8@3+ ProducerEpoch:2@3+"},
	23: {4, 4, "ReplicaID:4 Topics:[Topic:s Partitions:[Partition:4 CurrentLeaderEpoch:4 LeaderEpoch:4]]"},
	29: {2, 3, "ResourceType:1 ResourceName:s? ResourcePatternType:1 Principal:s? Host:s? Operation:1 PermissionType:1"},
	30: {2, 3, "Creations:[ResourceType:1 ResourceName:s ResourcePatternType:1 Principal:s Host:s Operation:1 PermissionType:1]"},
	31: {2, 3, "Filters:[ResourceType:1 ResourceName:s? ResourcePatternType:1 Principal:s? Host:s? Operation:1 PermissionType:1]"},
	32: {4, 4, "Resources:[ResourceType:1 ResourceName:s ConfigNames:[]s] IncludeSynonyms:1 IncludeDocumentation:1"},
	33: {2, 2, "Resources:[ResourceType:1 ResourceName:s Configs:[Name:s Value:s?]] ValidateOnly:1"},
	36: {2, 2, "SASLAuthBytes:b"},
	37: {2, 3, "Topics:[Topic:s Count:4 Assignment:[Replicas:[]4]] TimeoutMillis:4 ValidateOnly:1"},
	42: {2, 2, "Groups:[]s"},
	44: {1, 1, "Resources:[ResourceType:1 ResourceName:s Configs:[Name:s Op:1 Value:s?]] ValidateOnly:1"},
	50: {0, 0, "Users:[Name:s]"},
	51: {0, 0, "Deletions:[Name:s Mechanism:1] Upsertions:[Name:s Mechanism:1 Iterations:4 Salt:b SaltedPassword:b]"},
	60: {0, 2, "IncludeClusterAuthorizedOperations:1 EndpointType:1@1+ IncludeFencedBrokers:1@2+"},
}

func init() {
	for key, s := range requestSchemaText {
		p := schemaParser{text: s.text, min: s.min, max: s.max}
		fields := p.fields()
		if p.err == nil && p.pos < len(p.text) {
			p.fail("unexpected ]")
		}
		if p.err != nil {
			panic(fmt.Sprintf("request schema %d: %v", key, p.err))
		}
		ws := wireSchema{min: s.min, max: s.max}
		for v := s.min; v <= s.max; v++ {
			ws.byVersion = append(ws.byVersion, compile(fields, v))
		}
		requestSchemas[key] = ws
	}
}

// schemaParser reads requestSchemaText.
type schemaParser struct {
	text     string
	pos      int
	min, max int16 // the schema's versions: a field's default range
	err      error
}

func (p *schemaParser) fail(msg string) {
	if p.err == nil {
		p.err = fmt.Errorf("at %d of %q: %s", p.pos, p.text, msg)
	}
}

// fields reads fields up to a ] or the end.
func (p *schemaParser) fields() []wireField {
	var out []wireField
	for p.err == nil {
		for p.pos < len(p.text) && p.text[p.pos] == ' ' {
			p.pos++
		}
		if p.pos == len(p.text) || p.text[p.pos] == ']' {
			return out
		}
		out = append(out, p.field())
	}
	return nil
}

func (p *schemaParser) field() wireField {
	colon := strings.IndexByte(p.text[p.pos:], ':')
	if colon <= 0 {
		p.fail("want Name:type")
		return wireField{}
	}
	f := wireField{name: p.text[p.pos : p.pos+colon], min: p.min, max: p.max}
	p.pos += colon + 1
	switch rest := p.text[p.pos:]; {
	case strings.HasPrefix(rest, "[]"):
		p.pos += 2
		f.kind = wireArray
		if p.pos < len(p.text) && p.text[p.pos] == 's' {
			p.pos++
		} else {
			f.size = p.width()
		}
	case strings.HasPrefix(rest, "["):
		p.pos++
		f.kind = wireStructs
		f.fields = p.fields()
		if p.pos == len(p.text) {
			p.fail("unclosed [")
		}
		p.pos++
	case strings.HasPrefix(rest, "s?"):
		p.pos += 2
		f.kind, f.nullable = wireString, true
	case strings.HasPrefix(rest, "s"):
		p.pos++
		f.kind = wireString
	case strings.HasPrefix(rest, "b"):
		p.pos++
		f.kind = wireBytes
	default:
		f.kind, f.size = wireFixed, p.width()
	}
	if p.pos < len(p.text) && p.text[p.pos] == '@' {
		p.pos++
		f.min, f.max = p.versions()
	}
	if p.pos < len(p.text) && p.text[p.pos] != ' ' && p.text[p.pos] != ']' {
		p.fail("want a space after a field")
	}
	return f
}

// width reads a fixed width: 1, 2, 4, 8 or 16.
func (p *schemaParser) width() int {
	end := p.pos
	for end < len(p.text) && p.text[end] >= '0' && p.text[end] <= '9' {
		end++
	}
	n, err := strconv.Atoi(p.text[p.pos:end])
	if err != nil || (n != 1 && n != 2 && n != 4 && n != 8 && n != 16) {
		p.fail("want a width of 1, 2, 4, 8 or 16")
	}
	p.pos = end
	return n
}

// versions reads 7+, -10 or 8-10.
func (p *schemaParser) versions() (min, max int16) {
	end := p.pos
	for end < len(p.text) && p.text[end] != ' ' && p.text[end] != ']' {
		end++
	}
	spec := p.text[p.pos:end]
	p.pos = end
	min, max = p.min, p.max
	lo, hi, ok := strings.Cut(strings.TrimSuffix(spec, "+"), "-")
	if strings.HasSuffix(spec, "+") {
		hi, ok = "", false
	}
	var err error
	if lo != "" {
		min, err = parseVersion(lo)
	}
	if ok && err == nil {
		max, err = parseVersion(hi)
	}
	if err != nil || min > max {
		p.fail("bad versions " + spec)
	}
	return min, max
}

func parseVersion(s string) (int16, error) {
	n, err := strconv.ParseInt(s, 10, 16)
	return int16(n), err
}

// prepassBody walks body, a request body at a flexible version of key,
// with headerTags tagged fields already read from the request header. It
// returns the bytes after the body (kmsg ignores trailing bytes, and so does
// the caller), or an error: malformed, over maxFrameTags, or a version the
// schema does not cover (refused rather than decoded unchecked).
func prepassBody(key, version int16, body []byte, headerTags int) ([]byte, error) {
	s, ok := requestSchemas[key]
	if !ok || version < s.min || version > s.max {
		return nil, fmt.Errorf("no wire schema for API key %d version %d", key, version)
	}
	w := walker{b: body, tags: headerTags}
	if err := w.structure(s.byVersion[version-s.min]); err != nil {
		return nil, err
	}
	return w.b, nil
}

// walker reads a body from b, by fields compiled for its version.
type walker struct {
	b    []byte
	tags int // tagged fields read so far in the frame
}

// walkError says which field could not be read, and why.
type walkError struct {
	field string
	err   error
}

func (e *walkError) Error() string { return e.field + ": " + e.err.Error() }
func (e *walkError) Unwrap() error { return e.err }

// structure walks fields, then the struct's tagged fields.
func (w *walker) structure(fields []wireField) error {
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.kind {
		case wireFixed:
			err = w.skip(f.size)
		case wireString:
			err = w.compact(f.nullable)
		case wireBytes:
			err = w.compact(true)
		case wireArray:
			err = w.array(f)
		case wireStructs:
			err = w.structs(f)
		}
		if err != nil {
			var we *walkError
			if errors.As(err, &we) {
				we.field = f.name + "." + we.field
				return we
			}
			return &walkError{field: f.name, err: err}
		}
	}
	if err := w.tagged(); err != nil {
		return &walkError{field: "tagged fields", err: err}
	}
	return nil
}

var (
	errShort     = errors.New("truncated")
	errBadVarint = errors.New("bad uvarint")
	errCount     = errors.New("count larger than the bytes left can hold")
	errNull      = errors.New("null where the field is not nullable")
)

func (w *walker) skip(n int) error {
	if n < 0 || n > len(w.b) {
		return errShort
	}
	w.b = w.b[n:]
	return nil
}

// uvarint reads an unsigned varint of at most 32 bits, accepting exactly
// what kmsg's reader accepts (at most five bytes, the fifth at most 0x0f), so
// both read the same bytes as the same field.
func (w *walker) uvarint() (uint32, error) {
	v, n := uvarint32(w.b)
	if n == 0 {
		return 0, errBadVarint
	}
	w.b = w.b[n:]
	return v, nil
}

// uvarint32 decodes a uvarint of at most 32 bits from b, returning its value
// and length, or a length of 0 if b does not start with one.
func uvarint32(b []byte) (uint32, int) {
	var v uint32
	for i := 0; i < 5 && i < len(b); i++ {
		c := b[i]
		if i == 4 {
			if c > 0x0f {
				return 0, 0
			}
			return v | uint32(c)<<28, 5
		}
		v |= uint32(c&0x7f) << (7 * i)
		if c < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

// compactCount reads a compact length or count: n+1, 0 for null.
func (w *walker) compactCount() (n int, err error) {
	if len(w.b) > 0 && w.b[0] < 0x80 {
		n = int(w.b[0]) - 1
		w.b = w.b[1:]
		return n, nil
	}
	u, err := w.uvarint()
	if err != nil {
		return 0, err
	}
	return int(u) - 1, nil // -1: null
}

// compact skips a compact string or bytes, refusing null unless nullable.
func (w *walker) compact(nullable bool) error {
	if len(w.b) > 0 && w.b[0] < 0x80 { // a length under 127, in one byte
		n := int(w.b[0]) - 1
		switch {
		case n < 0 && !nullable:
			return errNull
		case n >= len(w.b):
			return errShort
		}
		w.b = w.b[1+max(n, 0):]
		return nil
	}
	n, err := w.compactCount()
	if err != nil {
		return err
	}
	return w.skip(n)
}

// count reads an array's count and checks it against the bytes left, each
// element taking at least least bytes.
func (w *walker) count(least int) (int, error) {
	n, err := w.compactCount()
	if err != nil || n <= 0 {
		return 0, err
	}
	if n > len(w.b)/least {
		return 0, errCount
	}
	return n, nil
}

func (w *walker) array(f *wireField) error {
	least := max(f.size, 1)
	n, err := w.count(least)
	if err != nil {
		return err
	}
	if f.size > 0 {
		return w.skip(n * f.size)
	}
	b := w.b
	for ; n > 0; n-- {
		// A string under 127 bytes is its length+1 in one byte, then the
		// bytes: c bytes in all.
		if len(b) > 0 && b[0] > 0 && b[0] < 0x80 && int(b[0]) <= len(b) {
			b = b[b[0]:]
			continue
		}
		w.b = b
		if err := w.compact(false); err != nil {
			return err
		}
		b = w.b
	}
	w.b = b
	return nil
}

func (w *walker) structs(f *wireField) error {
	n, err := w.count(f.least)
	if err != nil {
		return err
	}
	for ; n > 0; n-- {
		if err := w.structure(f.fields); err != nil {
			return err
		}
	}
	return nil
}

// tagged skips a struct's tagged fields: a count (each field takes at least
// two bytes, its key and its size), then each key, size and bytes; the
// frame's total is capped at maxFrameTags.
func (w *walker) tagged() error {
	if len(w.b) > 0 && w.b[0] == 0 { // none, as nearly always
		w.b = w.b[1:]
		return nil
	}
	u, err := w.uvarint()
	if err != nil {
		return err
	}
	if int64(u) > int64(len(w.b))/2 {
		return errCount
	}
	if w.tags += int(u); w.tags > maxFrameTags {
		return errTooManyTags
	}
	for n := int(u); n > 0; n-- {
		if _, err := w.uvarint(); err != nil {
			return err
		}
		size, err := w.uvarint()
		if err != nil {
			return err
		}
		if err := w.skip(int(size)); err != nil {
			return err
		}
	}
	return nil
}
