package devices

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestValidateFilter(t *testing.T) {
	for _, tc := range []struct {
		f  string
		ok bool
	}{
		{"a", true}, {"#", true}, {"+", true}, {"a/+/b/#", true}, {"+/+", true}, {"a//b", true}, {"/", true},
		{"$SYS/#", true}, {"factory/+/{device}/#", true}, {"{device}", true},
		{"", false}, {"a/#/b", false}, {"a#", false}, {"a/b#", false}, {"a+/b", false}, {"++", false},
		{"##", false}, {"a/\x00", false}, {"\xff", false}, {strings.Repeat("a", 65536), false},
		{"a/x{device}", false}, {"{device}x", false}, {"{device}/{device}s", false},
	} {
		err := ValidateFilter(tc.f)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidFilter)) {
			t.Errorf("ValidateFilter(%.40q) = %v, want ok=%v", tc.f, err, tc.ok)
		}
	}
}

func TestCanPublish(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true, ACL: ACL{Publish: []string{"factory/+/{device}/#", "status/{device}", "+/{device}/up"}}}, "")
	r.Add(Device{ID: "all", Enabled: true, ACL: ACL{Publish: []string{"#"}}}, "")
	r.Add(Device{ID: "off", Enabled: false, ACL: ACL{Publish: []string{"#"}}}, "")
	r.Add(Device{ID: "sys", Enabled: true, ACL: ACL{Publish: []string{"$SYS/{device}/#"}}}, "")
	for _, tc := range []struct {
		id, topic string
		want      bool
	}{
		{"dev1", "factory/line1/dev1/temp", true},
		{"dev1", "factory/line1/dev1", true}, // '#' matches the parent level
		{"dev1", "factory/line1/dev1/a/b/c", true},
		{"dev1", "factory//dev1/x", true}, // '+' matches an empty level
		{"dev1", "factory/line1/dev2/temp", false},
		{"dev1", "factory/line1/dev1x/temp", false},
		{"dev1", "factory/line1/{device}/temp", false}, // the token is not a wildcard
		{"dev1", "factory/line1/+/temp", false},        // wildcards are not topic names
		{"dev1", "factory/line1/dev1/#", false},
		{"dev1", "factory/#", false},
		{"dev1", "factory", false},
		{"dev1", "status/dev1", true},
		{"dev1", "status/dev1/x", false},
		{"dev1", "status/dev2", false},
		{"dev1", "x/dev1/up", true},
		{"dev1", "$SYS/dev1/up", false}, // a wildcard first level never matches '$'
		{"dev1", "", false},
		{"dev1", "status/dev1\x00", false},
		{"all", "a", true},
		{"all", "a/b/c", true},
		{"all", "/", true},
		{"all", "$SYS/broker", false},
		{"all", "$share/g/a", false},
		{"off", "a", false},
		{"nobody", "a", false},
		{"sys", "$SYS/sys/x", true},
		{"sys", "$SYS/dev1/x", false},
	} {
		if got := r.CanPublish(tc.id, tc.topic); got != tc.want {
			t.Errorf("CanPublish(%q, %q) = %v, want %v", tc.id, tc.topic, got, tc.want)
		}
	}
}

func TestCanSubscribe(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true}, "")
	r.Add(Device{ID: "off", Enabled: false, ACL: ACL{Subscribe: []string{"#"}}}, "")
	for _, tc := range []struct {
		acl    []string
		filter string
		want   bool
	}{
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1/#", true},
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1", true},
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1/x/y/z", true},
		{[]string{"factory/+/{device}/#"}, "factory/+/dev1/#", true},
		{[]string{"factory/+/{device}/#"}, "factory/+/dev1/+/x", true},
		{[]string{"factory/+/{device}/#"}, "factory/#", false},
		{[]string{"factory/+/{device}/#"}, "factory/+/#", false},
		{[]string{"factory/+/{device}/#"}, "factory/+/+/#", false},
		{[]string{"factory/+/{device}/#"}, "factory/a/dev2/#", false},
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1x/#", false},
		{[]string{"factory/+/{device}/#"}, "factory/a/{device}/#", false}, // a client's "{device}" is a literal
		{[]string{"factory/+/{device}/#"}, "factory/a", false},
		{[]string{"factory/+/{device}/#"}, "factory", false},
		{[]string{"factory/+/{device}/#"}, "#", false},
		{[]string{"factory/+/{device}/#"}, "+/a/dev1/x", false},
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1/#/x", false}, // invalid filters are refused
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1/x#", false},
		{[]string{"factory/+/{device}/#"}, "factory/a/dev1/+x", false},
		{[]string{"factory/+/{device}/#"}, "", false},
		{[]string{"factory/a/{device}/#"}, "+/a/dev1/x", false},
		{[]string{"factory/a/{device}/#"}, "factory/+/dev1/x", false},
		{[]string{"factory/a/{device}/#"}, "factory/a/dev1/+", true},
		{[]string{"{device}/#"}, "dev1/x", true},
		{[]string{"{device}/#"}, "+/x", false},
		{[]string{"{device}/#"}, "#", false},
		{[]string{"devices/{device}/#"}, "devices/+/#", false},
		{[]string{"devices/{device}/#"}, "devices/#", false},
		{[]string{"devices/{device}/#"}, "devices/dev1/#", true},
		// '$' topics and wildcard first levels.
		{[]string{"#"}, "#", true},
		{[]string{"#"}, "+/x", true},
		{[]string{"#"}, "a/b", true},
		{[]string{"#"}, "$SYS/broker/load", false},
		{[]string{"#"}, "$SYS/#", false},
		{[]string{"+/status"}, "x/status", true},
		{[]string{"+/status"}, "+/status", true},
		{[]string{"+/status"}, "$SYS/status", false},
		{[]string{"$SYS/#"}, "$SYS/#", true},
		{[]string{"$SYS/#"}, "$SYS/a/+", true},
		{[]string{"$SYS/#"}, "#", false},
		{[]string{"$SYS/#"}, "+/a", false},
		{[]string{"$SYS/#", "+/a"}, "+/a", true},
		// Coverage by several filters together.
		{[]string{"a", "a/+/#"}, "a/#", true},
		{[]string{"a", "a/+", "a/+/+/#"}, "a/#", true},
		{[]string{"a", "a/+", "a/+/+"}, "a/#", false},
		{[]string{"a/x", "a/+/y"}, "a/+", false},
		{[]string{"a/x", "a/+"}, "a/+", true},
		{[]string{"a/x/#", "a/+/y"}, "a/+/y", true},
		{[]string{"a/x/#", "a/y/#"}, "a/+/#", false},
		// Empty levels are ordinary values.
		{[]string{"a//b"}, "a//b", true},
		{[]string{"a//b"}, "a/+/b", false},
		{[]string{"a/+/b"}, "a//b", true},
		{nil, "a", false},
		{[]string{"a"}, "a", true},
		{[]string{"a"}, "a/#", false},
		{[]string{"a/#"}, "a", true},
		{[]string{"a/+"}, "a", false},
	} {
		if err := r.SetACL("dev1", nil, tc.acl); err != nil {
			t.Fatal(err)
		}
		if got := r.CanSubscribe("dev1", tc.filter); got != tc.want {
			t.Errorf("ACL %q: CanSubscribe(dev1, %q) = %v, want %v", tc.acl, tc.filter, got, tc.want)
		}
	}
	if r.CanSubscribe("off", "a") || r.CanSubscribe("nobody", "a") {
		t.Fatal("a disabled or unknown device may subscribe")
	}
}

// refMatch is the reference MQTT matcher for the fuzz oracle, written
// independently of matchLevels: filter and topic are whole strings.
func refMatch(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		if filter == "#" {
			return true
		}
		fl, frest, fmore := strings.Cut(filter, "/")
		tl, trest, tmore := strings.Cut(topic, "/")
		if fl != "+" && fl != tl {
			return false
		}
		if !fmore {
			return !tmore
		}
		if !tmore {
			return frest == "#" // "a/#" matches "a"
		}
		filter, topic = frest, trest
	}
}

// FuzzCanSubscribe checks the subset test against brute force: for small
// filters it enumerates every topic over the levels they name, plus values
// none of them names (one plain, one starting with '$'), up to one level
// deeper than the longest filter (deeper topics behave as that one does), and
// asks whether each topic the client's filter matches is matched by an ACL
// filter. It also checks matchLevels against refMatch on every topic.
func FuzzCanSubscribe(f *testing.F) {
	f.Add("factory/#", "factory/+/{device}/#")
	f.Fuzz(func(t *testing.T, filter, acl string) {
		const id = "dev1"
		if validateFilter(filter) != nil || strings.Count(filter, "/") > 3 {
			t.Skip()
		}
		var aclFilters []string
		for _, a := range strings.Split(acl, ",") {
			if ValidateFilter(a) != nil || strings.Count(a, "/") > 3 {
				t.Skip()
			}
			aclFilters = append(aclFilters, a)
		}
		if len(aclFilters) > 4 {
			t.Skip()
		}
		// The oracle substitutes the id on its own, level by level.
		var substituted []string
		for _, a := range aclFilters {
			levels := strings.Split(a, "/")
			for i := range levels {
				if levels[i] == "{device}" {
					levels[i] = id
				}
			}
			substituted = append(substituted, strings.Join(levels, "/"))
		}
		alphabet := map[string]bool{}
		depth := 0
		for _, s := range append([]string{filter}, substituted...) {
			levels := strings.Split(s, "/")
			depth = max(depth, len(levels))
			for _, l := range levels {
				if l != "+" && l != "#" {
					alphabet[l] = true
				}
			}
		}
		if len(alphabet) > 5 {
			t.Skip()
		}
		fresh := "~"
		for alphabet[fresh] || alphabet["$"+fresh] {
			fresh += "~"
		}
		values := []string{fresh, "$" + fresh}
		for l := range alphabet {
			values = append(values, l)
		}
		slices.Sort(values)

		compiled := compileFilters(aclFilters, id)
		want, witness := true, ""
		var walk func(prefix []string)
		walk = func(prefix []string) {
			if len(prefix) > 0 {
				topic := strings.Join(prefix, "/")
				if got := matchLevels(strings.Split(filter, "/"), prefix); got != refMatch(filter, topic) {
					t.Fatalf("matchLevels(%q, %q) = %v, refMatch says %v", filter, topic, got, !got)
				}
				if want && refMatch(filter, topic) && !slices.ContainsFunc(substituted, func(a string) bool { return refMatch(a, topic) }) {
					want, witness = false, topic
				}
			}
			if len(prefix) == depth+1 {
				return
			}
			for _, v := range values {
				walk(append(prefix, v))
			}
		}
		walk(nil)
		if got := covered(strings.Split(filter, "/"), compiled); got != want {
			t.Fatalf("covered(%q by %q) = %v; brute force says %v (uncovered topic %q)", filter, aclFilters, got, want, witness)
		}
	})
}
