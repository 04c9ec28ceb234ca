package configs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// File is a parsed config file: the command it is for and its settings in
// file order. Parsing checks the YAML only; [File.Apply] checks the keys and
// values against a command's flags.
type File struct {
	Path     string
	Mode     string // the command the file is for: "edge" or "full"
	ModeLine int
	Settings []Setting
}

// Setting is one key of a file and its value.
type Setting struct {
	Key  string
	Line int
	val  *yaml.Node
}

// Check is a command's own check of one value of a flag, beyond what the
// flag's parser checks (e.g. that a rule parses); nil checks nothing more.
// It is called with each value after the flag took it, each item of a list
// on its own.
type Check func(key, value string) error

// Error is one problem in a config file, at a line, or in one environment
// variable (Line 0).
type Error struct {
	Source string // the file's path, or the environment variable's name
	Line   int    // 1-based; 0 when there is no line
	Key    string // the key at fault, if any
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Source)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a file or the environment, in order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// err returns es as an error, nil when there is none.
func (es Errors) err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// reservedKeys are flags a file cannot set: a config file does not name
// another one.
var reservedKeys = map[string]bool{"config": true, "help": true}

// Load reads and parses the config file at path.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// Parse parses a config file's contents; path names it in errors. The
// file must be one YAML mapping of distinct scalar keys including mode.
func Parse(path string, data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{Source: path, Msg: "empty: want at least `mode: edge` or `mode: full`"}}
		}
		return nil, Errors{yamlError(path, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, Errors{yamlError(path, err)}
		}
		return nil, Errors{{Source: path, Line: extra.Line, Msg: "a second YAML document: a config file is one"}}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, Errors{{Source: path, Line: root.Line, Msg: "want a mapping of keys to values at the top level, got " + kindName(root)}}
	}
	f := &File{Path: path}
	var errs Errors
	seen := map[string]int{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			errs = append(errs, &Error{Source: path, Line: k.Line, Msg: "a key must be a flag name, got " + kindName(k)})
			continue
		}
		if first, ok := seen[k.Value]; ok {
			errs = append(errs, &Error{Source: path, Line: k.Line, Key: k.Value, Msg: fmt.Sprintf("given twice (first at line %d)", first)})
			continue
		}
		seen[k.Value] = k.Line
		for v.Kind == yaml.AliasNode {
			v = v.Alias
		}
		if k.Value == "mode" {
			f.ModeLine = k.Line
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" || v.Value == "" {
				errs = append(errs, &Error{Source: path, Line: k.Line, Key: "mode", Msg: "want edge or full, got " + describe(v)})
				continue
			}
			f.Mode = v.Value
			continue
		}
		f.Settings = append(f.Settings, Setting{Key: k.Value, Line: k.Line, val: v})
	}
	if f.ModeLine == 0 {
		errs = append(errs, &Error{Source: path, Key: "mode", Msg: "missing: say which command the file is for, `mode: edge` or `mode: full`"})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return f, nil
}

// yamlError turns a YAML syntax error into an Error with its line.
func yamlError(path string, err error) *Error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Source: path, Line: line, Msg: "YAML: " + m[2]}
	}
	return &Error{Source: path, Msg: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// Apply sets every setting of the file on fs, the flag set of the command
// named mode, and checks each value with the flag's parser and then check.
// Apply it before fs parses the command line, so the command line
// overrides the file. It reports every problem as [Errors].
func (f *File) Apply(fs *pflag.FlagSet, mode string, check Check) error {
	var errs Errors
	fail := func(s Setting, line int, format string, a ...any) {
		errs = append(errs, &Error{Source: f.Path, Line: line, Key: s.Key, Msg: fmt.Sprintf(format, a...)})
	}
	if f.Mode != mode {
		errs = append(errs, &Error{Source: f.Path, Line: f.ModeLine, Key: "mode",
			Msg: fmt.Sprintf("the file is for ferry %s, not ferry %s", f.Mode, mode)})
		return errs
	}
	for _, s := range f.Settings {
		fl := fs.Lookup(s.Key)
		if fl == nil || reservedKeys[s.Key] {
			msg := fmt.Sprintf("unknown key: ferry %s has no flag --%s", mode, s.Key)
			if reservedKeys[s.Key] {
				msg = fmt.Sprintf("--%s cannot be set in a config file", s.Key)
			} else if near := nearest(fs, s.Key); near != "" {
				msg += fmt.Sprintf(" (did you mean %s?)", near)
			}
			fail(s, s.Line, "%s", msg)
			continue
		}
		values, list, err := decode(fl, s.val)
		if err == nil && IsPath(fl) {
			values = f.resolve(values)
		}
		if err == nil {
			err = set(fl, values, list, check)
		}
		if err != nil {
			line := s.val.Line
			var ie *itemError
			if errors.As(err, &ie) {
				line = ie.line
			}
			fail(s, line, "%v", err)
		}
	}
	return errs.err()
}

// PathAnnotation marks a flag whose value names a file or directory
// ([MarkPath]): a relative one in a config file is relative to the file's
// directory, as Prometheus has it, not to wherever the node was started.
// On the command line and in FERRY_* variables it stays relative to the
// working directory, as any command's arguments are.
const PathAnnotation = "ferry-config-path"

// MarkPath marks the named flags of fs as paths ([PathAnnotation]); the
// caller names them, this package knows no key. A name fs has not is
// ignored (a flag of the other node command).
func MarkPath(fs *pflag.FlagSet, names ...string) {
	for _, name := range names {
		if fs.Lookup(name) != nil {
			_ = fs.SetAnnotation(name, PathAnnotation, []string{"true"})
		}
	}
}

// IsPath says whether fl is marked as a path.
func IsPath(fl *pflag.Flag) bool {
	_, ok := fl.Annotations[PathAnnotation]
	return ok
}

// resolve makes each relative, non-empty path value relative to the file's
// directory.
func (f *File) resolve(values []value) []value {
	dir := filepath.Dir(f.Path)
	out := make([]value, len(values))
	for i, v := range values {
		if v.s != "" && !filepath.IsAbs(v.s) {
			v.s = filepath.Join(dir, v.s)
		}
		out[i] = v
	}
	return out
}

// value is one value for a flag, with the line it came from.
type value struct {
	s    string
	line int
}

// itemError is a refused value at a line of its own (an item of a list).
type itemError struct {
	line int
	err  error
}

func (e *itemError) Error() string { return e.err.Error() }

// decode checks a YAML value's type against what the flag takes and returns
// its values; list says the flag takes a list.
func decode(fl *pflag.Flag, n *yaml.Node) (values []value, list bool, err error) {
	if _, ok := fl.Value.(pflag.SliceValue); ok {
		switch {
		case n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null":
			return nil, true, nil
		case n.Kind != yaml.SequenceNode:
			return nil, true, fmt.Errorf("want a list ([a, b], or one `- item` per line), got %s", describe(n))
		}
		for _, item := range n.Content {
			for item.Kind == yaml.AliasNode {
				item = item.Alias
			}
			if item.Kind != yaml.ScalarNode || item.ShortTag() == "!!null" {
				return nil, true, &itemError{item.Line, fmt.Errorf("want each item of the list to be one value, got %s", describe(item))}
			}
			values = append(values, value{item.Value, item.Line})
		}
		return values, true, nil
	}
	if n.Kind != yaml.ScalarNode {
		return nil, false, fmt.Errorf("want one value, got %s", describe(n))
	}
	tag := n.ShortTag()
	switch t := fl.Value.Type(); {
	case t == "bool":
		if tag != "!!bool" {
			return nil, false, fmt.Errorf("want true or false, got %s", describe(n))
		}
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || t == "count":
		if tag != "!!int" {
			return nil, false, fmt.Errorf("want a whole number, got %s", describe(n))
		}
	case strings.HasPrefix(t, "float"):
		if tag != "!!int" && tag != "!!float" {
			return nil, false, fmt.Errorf("want a number, got %s", describe(n))
		}
	case t == "string":
		if tag == "!!null" {
			return []value{{"", n.Line}}, false, nil
		}
	default: // durations and other types: the flag's parser decides
		if tag == "!!null" {
			return nil, false, fmt.Errorf("want a %s, got nothing", t)
		}
	}
	return []value{{n.Value, n.Line}}, false, nil
}

// set gives the flag its values: one value as the flag takes it from the
// command line; a list replacing the flag's, item by item, such that a
// later command-line flag replaces it again.
func set(fl *pflag.Flag, values []value, list bool, check Check) error {
	if list {
		sv := fl.Value.(pflag.SliceValue)
		if err := sv.Replace(nil); err != nil {
			return err
		}
		for _, v := range values {
			if err := sv.Append(v.s); err != nil {
				return &itemError{v.line, refused(fl, v.s, err)}
			}
			if check != nil {
				if err := check(fl.Name, v.s); err != nil {
					return &itemError{v.line, refused(fl, v.s, err)}
				}
			}
		}
		fl.Changed = true
		return nil
	}
	v := values[0]
	if err := fl.Value.Set(v.s); err != nil {
		return refused(fl, v.s, err)
	}
	if check != nil {
		if err := check(fl.Name, v.s); err != nil {
			return refused(fl, v.s, err)
		}
	}
	fl.Changed = true
	return nil
}

// refused says why the flag refused s; for a whole number out of the
// flag's range, which pflag calls "not an integer", it says so.
func refused(fl *pflag.Flag, s string, err error) error {
	if bits, signed, ok := intType(fl.Value.Type()); ok {
		var rerr error
		if signed {
			_, rerr = strconv.ParseInt(s, 0, bits)
		} else {
			_, rerr = strconv.ParseUint(s, 0, bits)
		}
		if ne := (*strconv.NumError)(nil); errors.As(rerr, &ne) && ne.Err == strconv.ErrRange {
			err = fmt.Errorf("out of range for %s", fl.Value.Type())
		}
	}
	return fmt.Errorf("bad value %q: %v", s, err)
}

// intType says whether a pflag type is a whole number, its size and sign.
func intType(t string) (bits int, signed, ok bool) {
	signed = !strings.HasPrefix(t, "uint")
	n := strings.TrimPrefix(strings.TrimPrefix(t, "u"), "int")
	if !strings.HasPrefix(t, "int") && !strings.HasPrefix(t, "uint") {
		return 0, false, false
	}
	if n == "" {
		return strconv.IntSize, signed, true
	}
	bits, err := strconv.Atoi(n)
	return bits, signed, err == nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.DocumentNode:
		return "a document"
	case yaml.AliasNode:
		return "an alias"
	}
	return describe(n)
}

// describe names a YAML value's type and shows it, for errors.
func describe(n *yaml.Node) string {
	if n.Kind != yaml.ScalarNode {
		return kindName(n)
	}
	switch n.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!bool":
		return "the boolean " + n.Value
	case "!!int":
		return "the number " + n.Value
	case "!!float":
		return "the number " + n.Value
	case "!!str":
		return fmt.Sprintf("the string %q", n.Value)
	}
	return fmt.Sprintf("%s %q", n.ShortTag(), n.Value)
}

// nearest is the flag name closest to key (at most two edits away), or "".
func nearest(fs *pflag.FlagSet, key string) string {
	best, bestD := "", 3
	fs.VisitAll(func(fl *pflag.Flag) {
		if reservedKeys[fl.Name] {
			return
		}
		if d := EditDistance(key, fl.Name); d < bestD {
			best, bestD = fl.Name, d
		}
	})
	return best
}

// EditDistance is the Levenshtein distance between a and b (flag, key and
// command names: a few dozen bytes), for "did you mean" hints.
func EditDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
