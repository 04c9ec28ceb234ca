package configs

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// FuzzConfig feeds arbitrary bytes to the config file's parser and applies
// what parses onto a command's flags. Whatever the input, it never panics
// or hangs; a refusal is always Errors whose every entry names the file
// and a line inside it (or no line); a file that parses and applies has a
// mode.
func FuzzConfig(f *testing.F) {
	for _, name := range []string{"edge.yaml", "full.yaml"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"mode: edge\ndata-dir: /tmp/x\n",
		"mode: edge\nmqtt-rule:\n  - 'a/+x -> a'\n  - 'b/# -> b'\n",
		"mode: edge\nmode: full\n",
		"mode: edge\nno-such-key: 1\n",
		"mode: edge\ndefault-partitions: many\n",
		"mode: edge\nmqtt-receive-maximum: 70000\n",
		"mode: edge\nmqtt-connect-timeout: 10 parsecs\n",
		"a: &x [*x]\nmode: edge\n",
		"mode: edge\nlog-level: &l info\nkafka-addr: *l\n",
		"--- \nmode: edge\n---\nmode: full\n",
		"[1, 2, 3]",
		"mode: edge\n\t bad indent: 1\n",
		"mode: edge\nmirror-topics: {a: b}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// YAML breaks lines at CR and at NEL, LS and PS too: count them
		// all (an upper bound of the lines it can name).
		lines := 1
		for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += bytes.Count(data, []byte(br))
		}
		checkErr := func(stage string, err error) {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("%s: %T %v, want Errors", stage, err, err)
			}
			for _, e := range es {
				if e.Source != "fuzz.yaml" || e.Line < 0 || e.Line > lines+1 || e.Msg == "" {
					t.Fatalf("%s: error %+v names no place in a file of %d lines", stage, e, lines)
				}
			}
		}
		file, err := Parse("fuzz.yaml", data)
		if err != nil {
			checkErr("parse", err)
			return
		}
		if file.Mode == "" {
			t.Fatal("parsed with no mode")
		}
		tf := newTestFlags()
		if err := file.Apply(tf.fs, "edge", levelCheck); err != nil {
			checkErr("apply", err)
		}
	})
}
