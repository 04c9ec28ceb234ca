package mqtt

import (
	"strconv"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Header keys of the records an MQTT publish becomes. MQTT 5 user
// properties are added as headers under their own names, after these.
const (
	HeaderTopic           = "mqtt.topic"
	HeaderQoS             = "mqtt.qos"
	HeaderRetain          = "mqtt.retain"
	HeaderClientID        = "mqtt.client_id"
	HeaderContentType     = "mqtt.content_type"
	HeaderResponseTopic   = "mqtt.response_topic"
	HeaderCorrelationData = "mqtt.correlation_data"
	HeaderPayloadFormat   = "mqtt.payload_format"
	// HeaderPacketID is the packet id of a QoS 1/2 publish, kept so that a
	// restarted broker still recognises a retransmission of it.
	HeaderPacketID = "mqtt.packet_id"
)

// publishInfo is what the mapping needs of a publish and its sender.
type publishInfo struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	ClientID string
	Username string
	Device   string
	V5       bool         // Props are MQTT 5 properties
	Props    publishProps // the properties a record keeps
	PacketID uint16       // for QoS 1/2
}

// publishProps are the MQTT 5 publish properties a record keeps, copied
// out of mochi's packet so the packet itself need not escape to the heap.
type publishProps struct {
	ContentType       string
	ResponseTopic     string
	CorrelationData   []byte
	PayloadFormat     byte
	PayloadFormatFlag bool
	User              []packets.UserProperty
}

func propsOf(p *packets.Properties) publishProps {
	return publishProps{ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData,
		PayloadFormat: p.PayloadFormat, PayloadFormatFlag: p.PayloadFormatFlag, User: p.User}
}

// route is where a publish goes: the first rule that matches, else the
// default rule (nil when unmatched publishes are dropped).
type router struct {
	rules       []*compiledRule
	def         *compiledRule
	maxCaptures int
}

func newRouter(rules []Rule, defaultTopic, defaultKey string, defaultPartitions int32) (*router, error) {
	r := &router{}
	for _, rule := range rules {
		c, err := compileRule(rule)
		if err != nil {
			return nil, err
		}
		if len(c.captures) > r.maxCaptures {
			r.maxCaptures = len(c.captures)
		}
		r.rules = append(r.rules, c)
	}
	if defaultTopic != "" {
		c, err := compileRule(Rule{Filter: "#", Topic: defaultTopic, Key: defaultKey, Partitions: defaultPartitions})
		if err != nil {
			return nil, err
		}
		if len(c.captures) > r.maxCaptures {
			r.maxCaptures = len(c.captures)
		}
		r.def = c
	}
	return r, nil
}

// route finds the rule for topic and the values of its captures. A '$'
// topic falls through to the default rule only if a rule names it.
func (r *router) route(topic string, vals []string) *compiledRule {
	for _, c := range r.rules {
		if c.match(topic, vals) {
			return c
		}
	}
	if r.def != nil && !(len(topic) > 0 && topic[0] == '$') {
		r.def.match(topic, vals)
		return r.def
	}
	return nil
}

// record builds the log record of a publish under rule c, whose captures
// are in vals. now is the receive time in Unix milliseconds.
func (c *compiledRule) record(p *publishInfo, vals []string, now int64, sc *recordScratch) flog.Record {
	if sc == nil {
		sc = new(recordScratch)
	}
	sc.reset()
	rec := flog.Record{Value: p.Payload, Timestamp: now}
	if rec.Value == nil {
		rec.Value = []byte{}
	}
	keyStart := len(sc.bytes)
	sc.bytes = c.renderKey(sc.bytes, vals, p.ClientID, p.Username, p.Device, p.Topic)
	rec.Key = sc.bytes[keyStart:len(sc.bytes):len(sc.bytes)]
	sc.header(HeaderTopic, p.Topic)
	sc.header(HeaderQoS, qosLabel[p.QoS%3])
	sc.header(HeaderRetain, strconv.FormatBool(p.Retain))
	sc.header(HeaderClientID, p.ClientID)
	if p.QoS > 0 && p.PacketID != 0 {
		start := len(sc.bytes)
		sc.bytes = strconv.AppendUint(sc.bytes, uint64(p.PacketID), 10)
		sc.headers = append(sc.headers, kmsg.Header{Key: HeaderPacketID, Value: sc.bytes[start:len(sc.bytes):len(sc.bytes)]})
	}
	if p.V5 {
		pr := &p.Props
		if pr.ContentType != "" {
			sc.header(HeaderContentType, pr.ContentType)
		}
		if pr.ResponseTopic != "" {
			sc.header(HeaderResponseTopic, pr.ResponseTopic)
		}
		if pr.CorrelationData != nil {
			sc.headers = append(sc.headers, kmsg.Header{Key: HeaderCorrelationData, Value: pr.CorrelationData})
		}
		if pr.PayloadFormatFlag {
			sc.header(HeaderPayloadFormat, string('0'+pr.PayloadFormat))
		}
		for _, u := range pr.User {
			sc.header(u.Key, u.Val)
		}
	}
	rec.Headers = sc.headers
	return rec
}

// recordScratch is reused memory for building one record at a time: the
// record only lives until it is encoded into its batch. Each connection
// has one (publishes of a connection are handled one after another).
type recordScratch struct {
	headers []kmsg.Header
	bytes   []byte // header values and the key; only appended to while a record is built
}

func (sc *recordScratch) reset() {
	sc.headers = sc.headers[:0]
	if cap(sc.bytes) > 64<<10 {
		sc.bytes = nil // do not keep a huge one around
	}
	sc.bytes = sc.bytes[:0]
}

// header adds a header whose value is a copy of v in the scratch bytes.
// Earlier values stay valid if the bytes grow: they keep the old array.
func (sc *recordScratch) header(k, v string) {
	start := len(sc.bytes)
	sc.bytes = append(sc.bytes, v...)
	sc.headers = append(sc.headers, kmsg.Header{Key: k, Value: sc.bytes[start:len(sc.bytes):len(sc.bytes)]})
}

// contentHash identifies a publish's content for recognising a
// retransmission: the topic and the payload.
// It is FNV-1a (64 bits) of the topic, a zero byte and the payload,
// computed in place: hash/fnv's Write would copy the topic to the heap.
func contentHash(topic string, payload []byte) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := 0; i < len(topic); i++ {
		h = (h ^ uint64(topic[i])) * prime
	}
	h *= prime // the zero byte: h ^ 0 == h
	for _, b := range payload {
		h = (h ^ uint64(b)) * prime
	}
	return h
}
