package devices

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// DeviceToken, as a whole level of an ACL filter, stands for the device's id.
const DeviceToken = "{device}"

// maxTopicLen is MQTT's limit on a topic name or filter (a UTF-8 string with a
// 16-bit length).
const maxTopicLen = 65535

// ValidateID reports whether id can name a device: 1–128 bytes of UTF-8, no
// '/', '+', '#' or NUL, and no leading '$'. These rules keep an id that is
// substituted for "{device}" a single literal level of a topic.
func ValidateID(id string) error {
	switch {
	case id == "" || len(id) > 128:
		return fmt.Errorf("%w %q: want 1 to 128 bytes", ErrInvalidID, id)
	case !utf8.ValidString(id):
		return fmt.Errorf("%w %q: not UTF-8", ErrInvalidID, id)
	case strings.ContainsAny(id, "/+#\x00"):
		return fmt.Errorf("%w %q: must not contain '/', '+', '#' or NUL", ErrInvalidID, id)
	case id[0] == '$':
		return fmt.Errorf("%w %q: must not start with '$'", ErrInvalidID, id)
	}
	return nil
}

// ValidateFilter reports whether f is a valid MQTT topic filter for an ACL:
// non-empty UTF-8 of at most 65535 bytes without NUL, '+' and '#' only as
// whole levels, '#' only as the last level, and "{device}" only as a whole
// level.
func ValidateFilter(f string) error {
	if err := validateFilter(f); err != nil {
		return err
	}
	for _, l := range strings.Split(f, "/") {
		if l != DeviceToken && strings.Contains(l, DeviceToken) {
			return fmt.Errorf("%w %q: %s must be a whole level", ErrInvalidFilter, f, DeviceToken)
		}
	}
	return nil
}

// validateFilter applies MQTT's filter rules only ("{device}" is an ordinary
// literal in a filter a client sends).
func validateFilter(f string) error {
	if err := validateString(f); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidFilter, f, err)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.ContainsAny(l, "+#") && len(l) > 1 {
			return fmt.Errorf("%w %q: '+' and '#' must be whole levels", ErrInvalidFilter, f)
		}
		if l == "#" && i != len(levels)-1 {
			return fmt.Errorf("%w %q: '#' must be the last level", ErrInvalidFilter, f)
		}
	}
	return nil
}

// validTopicName reports whether t is a topic name a client may publish to:
// a valid string without wildcards.
func validTopicName(t string) bool {
	return validateString(t) == nil && !strings.ContainsAny(t, "+#")
}

func validateString(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("empty")
	case len(s) > maxTopicLen:
		return fmt.Errorf("longer than %d bytes", maxTopicLen)
	case !utf8.ValidString(s):
		return fmt.Errorf("not UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return fmt.Errorf("contains NUL")
	}
	return nil
}

// compileFilters splits each ACL filter into levels and replaces every level
// that is exactly DeviceToken by id. Filters must have been validated.
func compileFilters(filters []string, id string) [][]string {
	out := make([][]string, 0, len(filters))
	for _, f := range filters {
		levels := strings.Split(f, "/")
		for i, l := range levels {
			if l == DeviceToken {
				levels[i] = id
			}
		}
		out = append(out, levels)
	}
	return out
}

// matchLevels reports whether the topic (levels, no wildcards) matches the
// filter (levels), with MQTT's rule that a wildcard first level never matches
// a first level starting with '$'.
func matchLevels(filter, topic []string) bool {
	if len(topic) > 0 && strings.HasPrefix(topic[0], "$") && len(filter) > 0 && isWild(filter[0]) {
		return false
	}
	for i, f := range filter {
		if f == "#" {
			return true // also matches the parent level: "a/#" matches "a"
		}
		if i >= len(topic) || (f != "+" && f != topic[i]) {
			return false
		}
	}
	return len(filter) == len(topic)
}

func isWild(level string) bool { return level == "+" || level == "#" }

// covered reports whether every topic that filter (levels, wildcards allowed)
// can match is matched by at least one of acl. Level values are unbounded, so
// a '+' in filter is covered only by wildcards in acl at that level, or by
// covering each value acl names literally there and every other value; a '#'
// in filter is covered level by level until acl runs out of levels, unless an
// acl '#' covers the rest at once.
func covered(filter []string, acl [][]string) bool {
	if len(filter) == 0 {
		return false
	}
	if first := filter[0]; !isWild(first) && strings.HasPrefix(first, "$") {
		// The filter's topics start with '$': no wildcard first level covers them.
		acl = narrow(acl, 0, first)
	}
	return cover(filter, 0, acl)
}

// cover decides coverage of filter's topics from level i on, by the acl
// filters that match the levels before i.
func cover(filter []string, i int, acl [][]string) bool {
	if len(acl) == 0 {
		return false
	}
	for _, a := range acl {
		if len(a) > i && a[i] == "#" {
			return true
		}
	}
	if i == len(filter) {
		return hasLength(acl, i)
	}
	switch level := filter[i]; level {
	case "#":
		// The topic ending here (the parent level '#' also matches; there
		// is none when '#' is the first level: a topic has a level), and
		// every longer one: level i takes any value and is followed by
		// '#' again.
		if i > 0 && !hasLength(acl, i) {
			return false
		}
		deeper := append(append(make([]string, 0, i+2), filter[:i]...), "+", "#")
		return cover(deeper, i, acl)
	case "+":
		seen := map[string]bool{}
		for _, a := range acl {
			if len(a) <= i || a[i] == "+" || seen[a[i]] {
				continue
			}
			seen[a[i]] = true
			if i == 0 && strings.HasPrefix(a[i], "$") {
				continue // a '+' first level never takes a '$' value
			}
			if !cover(filter, i+1, narrow(acl, i, a[i])) {
				return false
			}
		}
		// Any value no acl filter names at this level.
		return cover(filter, i+1, narrow(acl, i, "+"))
	default:
		return cover(filter, i+1, narrow(acl, i, level))
	}
}

// narrow keeps the acl filters whose level i matches value (a literal, or "+"
// for a value none of them names). Filters with '#' at i never get here.
func narrow(acl [][]string, i int, value string) [][]string {
	dollar := i == 0 && strings.HasPrefix(value, "$")
	var out [][]string
	for _, a := range acl {
		if len(a) <= i {
			continue
		}
		if a[i] == value || (a[i] == "+" && !dollar) || (a[i] == "#" && !dollar) {
			out = append(out, a)
		}
	}
	return out
}

func hasLength(acl [][]string, n int) bool {
	for _, a := range acl {
		if len(a) == n {
			return true
		}
	}
	return false
}

func splitLevels(s string) []string { return strings.Split(s, "/") }
