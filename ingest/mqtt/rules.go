package mqtt

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	flog "ferry/log"
)

// Rule maps MQTT topics to a log topic. Rules are tried in order; the first
// whose Filter matches a publish's topic decides where it is stored.
type Rule struct {
	// Filter is an MQTT topic filter whose wildcard levels may be named:
	// "+site" matches one level and calls it "site", "#rest" matches the
	// remaining levels (zero or more) and calls them "rest". A bare "+" or
	// "#" matches without a name.
	Filter string
	// Topic is the log topic the publish is appended to.
	Topic string
	// Key is the record key template: literal text with {name} references
	// to named levels of Filter or to {client_id}, {username}, {device} and
	// {topic}. Empty means the client id.
	Key string
	// Partitions is the partition count the topic is created with when it
	// does not exist; 0 means the server's default.
	Partitions int32
}

// String gives the rule in ParseRule's syntax.
func (r Rule) String() string {
	s := r.Filter + " -> " + r.Topic
	if r.Key != "" {
		s += " key=" + r.Key
	}
	if r.Partitions > 0 {
		s += " partitions=" + strconv.Itoa(int(r.Partitions))
	}
	return s
}

// ParseRule reads a rule written as
//
//	FILTER -> TOPIC [key=TEMPLATE] [partitions=N]
//
// e.g. "factory/+site/+device/telemetry -> telemetry key={device} partitions=4".
func ParseRule(s string) (Rule, error) {
	filter, rest, ok := strings.Cut(s, "->")
	if !ok {
		return Rule{}, fmt.Errorf("rule %q: want FILTER -> TOPIC [key=TEMPLATE] [partitions=N]", s)
	}
	r := Rule{Filter: strings.TrimSpace(filter)}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return Rule{}, fmt.Errorf("rule %q: no topic after ->", s)
	}
	r.Topic = fields[0]
	for _, f := range fields[1:] {
		k, v, ok := strings.Cut(f, "=")
		switch {
		case ok && k == "key":
			r.Key = v
		case ok && k == "partitions":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 1 {
				return Rule{}, fmt.Errorf("rule %q: partitions=%q is not a positive number", s, v)
			}
			r.Partitions = int32(n)
		default:
			return Rule{}, fmt.Errorf("rule %q: unknown option %q (want key= or partitions=)", s, f)
		}
	}
	return r, nil
}

// level is one level of a compiled filter.
type level struct {
	kind byte // 'l' literal, '+' one level, '#' the rest
	text string
	name string // for '+' and '#': the capture name, possibly empty
}

// keyPart is one piece of a compiled key template.
type keyPart struct {
	literal string
	capture int    // index into the rule's captures, or -1
	builtin string // client_id, username, device or topic, when capture < 0 and literal == ""
}

// compiledRule is a Rule ready to match.
type compiledRule struct {
	Rule
	levels   []level
	captures []string // capture names, in filter order
	key      []keyPart
}

var builtinKeys = map[string]bool{"client_id": true, "username": true, "device": true, "topic": true}

// compileRule validates a rule: a well-formed filter, a legal topic name,
// and a key template that names only captures and built-ins.
func compileRule(r Rule) (*compiledRule, error) {
	if err := flog.ValidateTopicName(r.Topic); err != nil {
		return nil, fmt.Errorf("rule %q: topic: %w", r.String(), err)
	}
	if r.Filter == "" {
		return nil, fmt.Errorf("rule %q: empty filter", r.String())
	}
	if r.Partitions < 0 {
		return nil, fmt.Errorf("rule %q: negative partitions", r.String())
	}
	c := &compiledRule{Rule: r}
	parts := strings.Split(r.Filter, "/")
	seen := map[string]bool{}
	for i, p := range parts {
		var lv level
		switch {
		case strings.HasPrefix(p, "+"):
			lv = level{kind: '+', name: p[1:]}
		case strings.HasPrefix(p, "#"):
			if i != len(parts)-1 {
				return nil, fmt.Errorf("rule %q: '#' must be the last level of the filter", r.String())
			}
			lv = level{kind: '#', name: p[1:]}
		default:
			if strings.ContainsAny(p, "+#") {
				return nil, fmt.Errorf("rule %q: level %q mixes a wildcard with text; wildcards take a whole level", r.String(), p)
			}
			lv = level{kind: 'l', text: p}
		}
		if lv.name != "" {
			if strings.ContainsAny(lv.name, "+#{}") {
				return nil, fmt.Errorf("rule %q: capture name %q may not contain + # { }", r.String(), lv.name)
			}
			if seen[lv.name] {
				return nil, fmt.Errorf("rule %q: capture name %q used twice", r.String(), lv.name)
			}
			seen[lv.name] = true
		}
		if lv.kind != 'l' {
			c.captures = append(c.captures, lv.name)
		}
		c.levels = append(c.levels, lv)
	}
	tmpl := r.Key
	if tmpl == "" {
		tmpl = "{client_id}"
	}
	key, err := compileKey(tmpl, c.captures)
	if err != nil {
		return nil, fmt.Errorf("rule %q: key: %w", r.String(), err)
	}
	c.key = key
	return c, nil
}

func compileKey(tmpl string, captures []string) ([]keyPart, error) {
	var out []keyPart
	for len(tmpl) > 0 {
		open := strings.IndexByte(tmpl, '{')
		if open < 0 {
			if strings.IndexByte(tmpl, '}') >= 0 {
				return nil, errors.New("'}' without '{'")
			}
			out = append(out, keyPart{literal: tmpl, capture: -1})
			break
		}
		if open > 0 {
			if strings.IndexByte(tmpl[:open], '}') >= 0 {
				return nil, errors.New("'}' without '{'")
			}
			out = append(out, keyPart{literal: tmpl[:open], capture: -1})
		}
		end := strings.IndexByte(tmpl[open:], '}')
		if end < 0 {
			return nil, errors.New("'{' without '}'")
		}
		name := tmpl[open+1 : open+end]
		part := keyPart{capture: -1}
		for i, c := range captures {
			if c != "" && c == name {
				part.capture = i
			}
		}
		if part.capture < 0 {
			if !builtinKeys[name] {
				return nil, fmt.Errorf("{%s} names no level of the filter and no built-in (client_id, username, device, topic)", name)
			}
			part.builtin = name
		}
		out = append(out, part)
		tmpl = tmpl[open+end+1:]
	}
	return out, nil
}

// match reports whether topic matches the rule's filter, filling vals with
// the captured levels (vals must have room for len(c.captures)). It follows
// MQTT matching: '+' takes exactly one (possibly empty) level, '#' the rest
// including none, and a topic starting with '$' matches no filter whose
// first level is a wildcard.
func (c *compiledRule) match(topic string, vals []string) bool {
	if strings.HasPrefix(topic, "$") && c.levels[0].kind != 'l' {
		return false
	}
	pos, more, ci := 0, true, 0
	for _, lv := range c.levels {
		if lv.kind == '#' {
			vals[ci] = ""
			if more {
				vals[ci] = topic[pos:]
			}
			return true
		}
		if !more {
			return false
		}
		seg := topic[pos:]
		if j := strings.IndexByte(seg, '/'); j >= 0 {
			seg = seg[:j]
			pos += j + 1
		} else {
			more = false
		}
		if lv.kind == 'l' {
			if seg != lv.text {
				return false
			}
			continue
		}
		vals[ci] = seg
		ci++
	}
	return !more
}

// renderKey builds the record key. vars holds the built-ins.
func (c *compiledRule) renderKey(dst []byte, vals []string, clientID, username, device, topic string) []byte {
	for _, p := range c.key {
		switch {
		case p.capture >= 0:
			dst = append(dst, vals[p.capture]...)
		case p.builtin == "client_id":
			dst = append(dst, clientID...)
		case p.builtin == "username":
			dst = append(dst, username...)
		case p.builtin == "device":
			dst = append(dst, device...)
		case p.builtin == "topic":
			dst = append(dst, topic...)
		default:
			dst = append(dst, p.literal...)
		}
	}
	return dst
}
