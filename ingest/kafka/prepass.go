package kafka

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// The pre-pass (issue 13): before kmsg decodes a request body, ferry walks
// its wire structure from a schema of its own and refuses a body that is
// malformed, that holds a count its bytes cannot (each element at its least
// encoded size), or that carries more tagged fields than any client sends.
// kmsg checks each count against the bytes left as if every element took one
// byte, and sizes its slice by it (a 64 KiB count of strings is a 1 MiB
// slice), and it keeps every unknown tagged field in a map (kmsg.Tags): 64
// KiB of distinct tags, about 21,000 map insertions, cost over a millisecond
// of CPU and 2.6 MB. The walk allocates nothing (but its error), never
// recurses on what the wire says (only down the schema, at most four deep),
// and every loop consumes at least one byte per turn, so its cost is linear
// in the frame.
//
// Each schema is written from Kafka's published message definitions
// (clients/src/main/resources/common/message/*Request.json in apache/kafka),
// for the versions this package advertises; TestPrepassAcceptsWhatKmsgEncodes
// holds each against kmsg's encoding of random requests at every version. A
// version without a schema is refused, so raising a handler's version range
// needs its schema here: that test fails until then.

// maxFrameTags caps the tagged fields, known and unknown, a request may carry
// in its header and body together. The request header has no known tagged
// field, and at the versions ferry advertises a request body has at most one
// (Fetch v12's ClusterId); Kafka puts at most a handful in a struct and real
// clients send almost none. 256 leaves two orders of magnitude for future
// clients while bounding kmsg's map work for a frame to a few microseconds.
const maxFrameTags = 256

// errTooManyTags is returned for a frame over maxFrameTags.
var errTooManyTags = errors.New("too many tagged fields")

// wireKind is a schema field's type.
type wireKind uint8

const (
	wireFixed   wireKind = iota // size bytes: int8, bool, int16, int32, int64, uuid
	wireString                  // string: null only if nullable
	wireBytes                   // bytes or records: null taken as empty, as kmsg does
	wireArray                   // array (may be null) of fixed-width (size) or string (size 0) elements
	wireStructs                 // array (may be null) of structs
)

// wireField is one field of a request schema, present at versions min..max.
type wireField struct {
	name     string
	kind     wireKind
	size     int  // wireFixed: the width; wireArray: the element's width, 0 for strings
	nullable bool // wireString: null is allowed
	min, max int16
	fields   []wireField // wireStructs: the element's fields
	least    int         // wireArray, wireStructs compiled for a version: the fewest bytes an element takes
}

// wireSchema is a request's body at versions min..max, compiled for each
// (byVersion[version-min]).
type wireSchema struct {
	min, max  int16
	byVersion []wireVersion
}

// wireVersion is a request's body at one version: the fields present, and
// whether the version is flexible (compact lengths and counts, a tagged-field
// section ending each struct).
type wireVersion struct {
	flexible bool
	fields   []wireField
}

// compile returns the fields present at version, with each array's least
// element size.
func compile(fields []wireField, version int16, flexible bool) []wireField {
	// The least bytes of a string, or of bytes or an array: its length or
	// count (a uvarint when flexible).
	str, other := 2, 4
	if flexible {
		str, other = 1, 1
	}
	var out []wireField
	for _, f := range fields {
		if version < f.min || version > f.max {
			continue
		}
		switch f.kind {
		case wireArray:
			f.least = f.size
			if f.size == 0 {
				f.least = str
			}
		case wireStructs:
			f.fields = compile(f.fields, version, flexible)
			f.least = 0
			if flexible {
				f.least = 1 // the tagged-field count
			}
			for _, g := range f.fields {
				switch g.kind {
				case wireFixed:
					f.least += g.size
				case wireString:
					f.least += str
				default:
					f.least += other
				}
			}
			f.least = max(f.least, 1)
		}
		out = append(out, f)
	}
	return out
}

// requestSchemas is parsed from requestSchemaText at init. The grammar:
// fields separated by spaces, each Name:type with an optional @versions
// (@7+, @-10, @8-10, @1-1; every version of the schema when absent). Types:
// 1, 2, 4, 8, 16 (fixed width: int8 and bool, int16, int32, int64, uuid), s
// and s? (string, s? nullable: Kafka, and kmsg, refuse a null string
// elsewhere), b (bytes or records), []4 and []s (arrays of int32 or
// strings), [fields] (an array of structs). Arrays may be null, as kmsg
// takes null for empty. At a flexible version a struct ends with its tagged
// fields; known tags are skipped like unknown ones, as kmsg reads them from
// the tag's own bytes.
var requestSchemas = map[int16]wireSchema{}

var requestSchemaText = map[int16]struct {
	min, max int16
	text     string
}{
	0:  {3, 11, "TransactionalID:s? Acks:2 TimeoutMillis:4 Topics:[Topic:s Partitions:[Partition:4 Records:b]]"},
	1:  {4, 12, "ReplicaID:4 MaxWaitMillis:4 MinBytes:4 MaxBytes:4 IsolationLevel:1 SessionID:4@7+ SessionEpoch:4@7+ Topics:[Topic:s Partitions:[Partition:4 CurrentLeaderEpoch:4@9+ FetchOffset:8 LastFetchedEpoch:4@12+ LogStartOffset:8@5+ PartitionMaxBytes:4]] Forgotten:[Topic:s Partitions:[]4]@7+ Rack:s@11+"},
	2:  {1, 8, "ReplicaID:4 IsolationLevel:1@2+ Topics:[Topic:s Partitions:[Partition:4 CurrentLeaderEpoch:4@4+ Timestamp:8]]"},
	3:  {0, 12, "Topics:[TopicID:16@10+ Topic:s?] AllowAutoTopicCreation:1@4+ IncludeClusterAuthorizedOperations:1@8-10 IncludeTopicAuthorizedOperations:1@8+"},
	8:  {0, 8, "Group:s Generation:4@1+ MemberID:s@1+ InstanceID:s?@7+ RetentionTimeMillis:8@2-4 Topics:[Topic:s Partitions:[Partition:4 Offset:8 LeaderEpoch:4@6+ Timestamp:8@1-1 Metadata:s?]]"},
	9:  {0, 8, "Group:s@-7 Topics:[Topic:s Partitions:[]4]@-7 Groups:[Group:s Topics:[Topic:s Partitions:[]4]]@8+ RequireStable:1@7+"},
	10: {0, 4, "CoordinatorKey:s@-3 CoordinatorType:1@1+ CoordinatorKeys:[]s@4+"},
	11: {0, 7, "Group:s SessionTimeoutMillis:4 RebalanceTimeoutMillis:4@1+ MemberID:s InstanceID:s?@5+ ProtocolType:s Protocols:[Name:s Metadata:b]"},
	12: {0, 4, "Group:s Generation:4 MemberID:s InstanceID:s?@3+"},
	13: {0, 4, "Group:s MemberID:s@-2 Members:[MemberID:s InstanceID:s?]@3+"},
	14: {0, 5, "Group:s Generation:4 MemberID:s InstanceID:s?@3+ ProtocolType:s?@5+ Protocol:s?@5+ GroupAssignment:[MemberID:s MemberAssignment:b]"},
	15: {0, 5, "Groups:[]s IncludeAuthorizedOperations:1@3+"},
	16: {0, 4, "StatesFilter:[]s@4+"},
	17: {0, 1, "Mechanism:s"},
	18: {0, 3, "ClientSoftwareName:s@3+ ClientSoftwareVersion:s@3+"},
	19: {0, 7, "Topics:[Topic:s NumPartitions:4 ReplicationFactor:2 ReplicaAssignment:[Partition:4 Replicas:[]4] Configs:[Name:s Value:s?]] TimeoutMillis:4 ValidateOnly:1@1+"},
	20: {0, 6, "TopicNames:[]s@-5 Topics:[Topic:s? TopicID:16]@6+ TimeoutMillis:4"},
	21: {0, 2, "Topics:[Topic:s Partitions:[Partition:4 Offset:8]] TimeoutMillis:4"},
	22: {0, 4, "TransactionalID:s? TransactionTimeoutMillis:4 ProducerID:8@3+ ProducerEpoch:2@3+"},
	23: {2, 4, "ReplicaID:4@3+ Topics:[Topic:s Partitions:[Partition:4 CurrentLeaderEpoch:4 LeaderEpoch:4]]"},
	29: {0, 3, "ResourceType:1 ResourceName:s? ResourcePatternType:1@1+ Principal:s? Host:s? Operation:1 PermissionType:1"},
	30: {0, 3, "Creations:[ResourceType:1 ResourceName:s ResourcePatternType:1@1+ Principal:s Host:s Operation:1 PermissionType:1]"},
	31: {0, 3, "Filters:[ResourceType:1 ResourceName:s? ResourcePatternType:1@1+ Principal:s? Host:s? Operation:1 PermissionType:1]"},
	32: {0, 4, "Resources:[ResourceType:1 ResourceName:s ConfigNames:[]s] IncludeSynonyms:1@1+ IncludeDocumentation:1@3+"},
	33: {0, 2, "Resources:[ResourceType:1 ResourceName:s Configs:[Name:s Value:s?]] ValidateOnly:1"},
	36: {0, 2, "SASLAuthBytes:b"},
	37: {0, 3, "Topics:[Topic:s Count:4 Assignment:[Replicas:[]4]] TimeoutMillis:4 ValidateOnly:1"},
	42: {0, 2, "Groups:[]s"},
	44: {0, 1, "Resources:[ResourceType:1 ResourceName:s Configs:[Name:s Op:1 Value:s?]] ValidateOnly:1"},
	45: {0, 1, "TimeoutMillis:4 AllowReplicationFactorChange:1@1+ Topics:[Topic:s Partitions:[Partition:4 Replicas:[]4]]"},
	46: {0, 0, "TimeoutMillis:4 Topics:[Topic:s Partitions:[]4]"},
	47: {0, 0, "Group:s Topics:[Topic:s Partitions:[Partition:4]]"},
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
			req := kmsg.RequestForKey(key)
			req.SetVersion(v)
			ws.byVersion = append(ws.byVersion, wireVersion{req.IsFlexible(), compile(fields, v, req.IsFlexible())})
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

// prepassBody walks body, a request body of key at version, with
// headerTags tagged fields already read from the request header. It returns
// the bytes after the body (kmsg ignores trailing bytes, and so does the
// caller), or an error: malformed, over maxFrameTags, or a version no schema
// covers (refused rather than decoded unchecked).
func prepassBody(key, version int16, body []byte, headerTags int) ([]byte, error) {
	s, ok := requestSchemas[key]
	if !ok || version < s.min || version > s.max {
		return nil, fmt.Errorf("no wire schema for API key %d version %d", key, version)
	}
	v := &s.byVersion[version-s.min]
	w := walker{b: body, flexible: v.flexible, tags: headerTags}
	if err := w.structure(v.fields); err != nil {
		return nil, err
	}
	return w.b, nil
}

// walker reads a body from b, by fields compiled for its version.
type walker struct {
	b        []byte
	flexible bool
	tags     int // tagged fields read so far in the frame
}

// walkError says which field could not be read, and why.
type walkError struct {
	field string
	err   error
}

func (e *walkError) Error() string { return e.field + ": " + e.err.Error() }
func (e *walkError) Unwrap() error { return e.err }

// structure walks fields, then, when flexible, the struct's tagged fields.
func (w *walker) structure(fields []wireField) error {
	for i := range fields {
		f := &fields[i]
		var err error
		switch f.kind {
		case wireFixed:
			err = w.skip(f.size)
		case wireString:
			err = w.str(f.nullable)
		case wireBytes:
			err = w.bytes()
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
	if !w.flexible {
		return nil
	}
	if len(w.b) > 0 && w.b[0] == 0 { // no tagged field, as nearly always
		w.b = w.b[1:]
		return nil
	}
	if err := w.tagged(); err != nil {
		return &walkError{field: "tagged fields", err: err}
	}
	return nil
}

var (
	errShort     = errors.New("truncated")
	errBadVarint = errors.New("bad uvarint")
	errLength    = errors.New("negative length")
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

// length reads a length or count: a uvarint of n+1 when flexible (0 for
// null), else an int16 (strings) or int32; -1 for null.
func (w *walker) length(int16Wide bool) (int, error) {
	if b := w.b; w.flexible && len(b) > 0 && b[0] < 0x80 { // one byte, as nearly always
		w.b = b[1:]
		return int(b[0]) - 1, nil
	}
	return w.lengthSlow(int16Wide)
}

func (w *walker) lengthSlow(int16Wide bool) (int, error) {
	switch {
	case w.flexible:
		u, err := w.uvarint()
		return int(u) - 1, err
	case int16Wide:
		if len(w.b) < 2 {
			return 0, errShort
		}
		n := int(int16(binary.BigEndian.Uint16(w.b)))
		w.b = w.b[2:]
		return n, nil
	default:
		if len(w.b) < 4 {
			return 0, errShort
		}
		n := int(int32(binary.BigEndian.Uint32(w.b)))
		w.b = w.b[4:]
		return n, nil
	}
}

// str skips a string, refusing null unless nullable.
func (w *walker) str(nullable bool) error {
	if w.flexible && len(w.b) > 0 && w.b[0] > 0 && w.b[0] < 0x80 && int(w.b[0]) <= len(w.b) {
		w.b = w.b[w.b[0]:] // a length under 127: length+1 in one byte, then the bytes
		return nil
	}
	n, err := w.length(true)
	switch {
	case err != nil:
		return err
	case n == -1 && nullable:
		return nil
	case n == -1:
		return errNull
	case n < 0:
		return errLength
	}
	return w.skip(n)
}

// bytes skips bytes or records.
func (w *walker) bytes() error {
	n, err := w.length(false)
	switch {
	case err != nil:
		return err
	case n == -1:
		return nil
	case n < 0:
		return errLength
	}
	return w.skip(n)
}

// count reads an array's count and checks it against the bytes left, each
// element taking at least least bytes; null counts as none.
func (w *walker) count(least int) (int, error) {
	n, err := w.length(false)
	switch {
	case err != nil:
		return 0, err
	case n == -1:
		return 0, nil
	case n < 0:
		return 0, errLength
	case n > len(w.b)/least:
		return 0, errCount
	}
	return n, nil
}

func (w *walker) array(f *wireField) error {
	n, err := w.count(f.least)
	if err != nil {
		return err
	}
	if f.size > 0 {
		return w.skip(n * f.size)
	}
	for ; n > 0; n-- {
		if err := w.str(false); err != nil {
			return err
		}
	}
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

// tagged skips a struct's tagged fields at a flexible version: a count
// (each field takes at least two bytes, its key and its size), then each
// key, size and bytes; the frame's total is capped at maxFrameTags.
func (w *walker) tagged() error {
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
