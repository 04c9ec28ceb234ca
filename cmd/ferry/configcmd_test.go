package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"ferry/configs"
)

// nodeFlagSet is the flag set of the node command mode.
func nodeFlagSet(t *testing.T, mode string) (*pflag.FlagSet, action) {
	t.Helper()
	c := nodeCommand(mode)
	if c == nil {
		t.Fatalf("no node command %q", mode)
	}
	fs := pflag.NewFlagSet("ferry "+mode, pflag.ContinueOnError)
	fs.SortFlags = false
	act := c.flags(fs)
	return fs, act
}

func examplePath(mode string) string { return filepath.Join("..", "..", "configs", mode+".yaml") }

// The example files are valid configs of their command, as
// `ferry config check` says, with and without --json, once the
// certificates they name (relative to the files: ../certs) exist; where
// those are missing the check names each, at its line.
func TestConfigCheckExamples(t *testing.T) {
	work := t.TempDir()
	if err := os.Mkdir(filepath.Join(work, "configs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"edge", "full"} {
		b, err := os.ReadFile(examplePath(mode))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(work, "configs", mode+".yaml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyPath := func(mode string) string { return filepath.Join(work, "configs", mode+".yaml") }
	for _, mode := range []string{"edge", "full"} {
		code, out, _ := ferry(t, "config", "check", copyPath(mode))
		if code != 1 || !strings.Contains(out, filepath.Join(work, "certs", "ca.pem")+": no such file or directory") {
			t.Errorf("check %s without its certificates: %d %q", mode, code, out)
		}
	}
	certs := filepath.Join(work, "certs")
	for _, args := range [][]string{{"init"}, {"node", "--host", "localhost,127.0.0.1"}, {"edge", "gw1"}} {
		if code, _, errOut := ferry(t, append(append([]string{"certs"}, args...), "--dir", certs)...); code != 0 {
			t.Fatalf("ferry certs %v: %s", args, errOut)
		}
	}
	for _, mode := range []string{"edge", "full"} {
		path := copyPath(mode)
		code, out, errOut := ferry(t, "config", "check", path)
		if code != 0 || !strings.Contains(out, "a valid ferry "+mode+" config") {
			t.Errorf("check %s: %d %q %q", path, code, out, errOut)
		}
		code, out, _ = ferry(t, "config", "check", path, "--json")
		var r configReport
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || !r.Valid || r.Mode != mode || len(r.Problems) != 0 {
			t.Errorf("check %s --json: %d %v %+v", path, code, err, r)
		}
		fs, _ := nodeFlagSet(t, mode)
		if n := countFlags(fs) - 1; len(r.Settings) != n { // all but --config
			t.Errorf("check %s --json: %d settings, want one per flag (%d)", path, len(r.Settings), n)
		}
	}
}

// TestConfigPathsRelativeToTheFile: a relative path in a config file is
// relative to the file's directory (it was relative to wherever the node
// started); on the command line it stays relative to the working
// directory. config check reads the files: a certificate that is not one,
// a key without its certificate and an empty CA bundle are each a problem
// at their line.
func TestConfigPathsRelativeToTheFile(t *testing.T) {
	t.Setenv("FERRY_CONFIG", "")
	dir := t.TempDir()
	file := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(file, []byte("mode: edge\ndata-dir: state\nkafka-tls-client-ca: /abs/ca.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	newFlags := func() (*pflag.FlagSet, action) { return nodeFlagSet(t, "edge") }
	fs, _, err := configure("edge", newFlags, nil, nil, file)
	if err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("data-dir").Value.String(); got != filepath.Join(dir, "state") {
		t.Errorf("data-dir: %q, want %q", got, filepath.Join(dir, "state"))
	}
	if got := fs.Lookup("kafka-tls-client-ca").Value.String(); got != "/abs/ca.pem" {
		t.Errorf("an absolute path changed: %q", got)
	}
	fs, _, err = configure("edge", newFlags, []string{"--data-dir", "here"}, nil, file)
	if err != nil || fs.Lookup("data-dir").Value.String() != "here" {
		t.Errorf("--data-dir here on the command line: %v %q", err, fs.Lookup("data-dir").Value.String())
	}

	if err := os.WriteFile(filepath.Join(dir, "junk.pem"), []byte("not PEM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("mode: edge\nkafka-tls-cert: junk.pem\nkafka-tls-key: junk.pem\nmqtt-tls-key: junk.pem\nadmin-tls-client-ca: junk.pem\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := ferry(t, "config", "check", bad)
	for _, want := range []string{
		bad + ":2: kafka-tls-cert: " + filepath.Join(dir, "junk.pem") + " and ",
		bad + ":4: mqtt-tls-key: set without mqtt-tls-cert",
		bad + ":5: admin-tls-client-ca: " + filepath.Join(dir, "junk.pem") + " holds no PEM certificate",
	} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("config check: exit %d, %q lacks %q", code, out, want)
		}
	}
}

func countFlags(fs *pflag.FlagSet) (n int) {
	fs.VisitAll(func(*pflag.Flag) { n++ })
	return n
}

// Every flag of ferry edge and ferry full has its key in the command's
// example file, under a comment that says its default ("# default: V",
// V as the file would write it), so the examples cannot fall behind the
// flags. A new flag fails here with the lines to add.
func TestConfigExamplesDocumentEveryFlag(t *testing.T) {
	for _, mode := range []string{"edge", "full"} {
		path := examplePath(mode)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := configs.Parse(path, data)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		keyLine := map[string]int{}
		for _, s := range f.Settings {
			keyLine[s.Key] = s.Line
		}
		fs, _ := nodeFlagSet(t, mode)
		fs.VisitAll(func(fl *pflag.Flag) {
			if fl.Name == "config" {
				return
			}
			line, ok := keyLine[fl.Name]
			if !ok {
				t.Errorf("%s: no key %s for --%s; add it with its help and default:\n\n# %s\n# default: %s\n%s: %s\n",
					path, fl.Name, fl.Name, fl.Usage, yamlDefault(fl), fl.Name, yamlDefault(fl))
				return
			}
			def, found := "", false
			for i := line - 2; i >= 0 && strings.HasPrefix(lines[i], "#"); i-- {
				if def, found = strings.CutPrefix(lines[i], "# default: "); found {
					break
				}
			}
			if !found {
				t.Errorf("%s:%d: %s: the comment above the key should say `# default: %s`", path, line, fl.Name, yamlDefault(fl))
				return
			}
			// The documented default, read as a file would be, is the flag's.
			doc, err := configs.Parse("default", []byte("mode: "+mode+"\n"+fl.Name+": "+def+"\n"))
			fresh, _ := nodeFlagSet(t, mode)
			if err == nil {
				err = doc.Apply(fresh, mode, nil)
			}
			if err != nil {
				t.Errorf("%s:%d: %s: the documented default %q does not read: %v", path, line, fl.Name, def, err)
				return
			}
			if got := fresh.Lookup(fl.Name).Value.String(); got != fl.DefValue {
				t.Errorf("%s:%d: %s: documented default %s is %q, the flag's is %q (write `# default: %s`)", path, line, fl.Name, def, got, fl.DefValue, yamlDefault(fl))
			}
		})
	}
}

// yamlDefault is a flag's default as a config file writes it.
func yamlDefault(fl *pflag.Flag) string {
	if _, ok := fl.Value.(pflag.SliceValue); ok {
		var items []string
		for _, it := range parseListDefault(fl.DefValue) {
			items = append(items, strconv.Quote(it))
		}
		return "[" + strings.Join(items, ", ") + "]"
	}
	if fl.Value.Type() == "string" {
		return strconv.Quote(fl.DefValue)
	}
	return fl.DefValue
}

// parseListDefault reads pflag's "[a,b]" form of a list default.
func parseListDefault(s string) []string {
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// Every key the commands' own checks name is a flag of that command (a
// renamed flag would otherwise lose its check silently).
func TestNodeChecksNameFlags(t *testing.T) {
	for mode, checks := range nodeChecks {
		modes := []string{mode}
		if mode == "" {
			modes = []string{"edge", "full"}
		}
		for _, m := range modes {
			fs, _ := nodeFlagSet(t, m)
			for key := range checks {
				if fs.Lookup(key) == nil {
					t.Errorf("nodeChecks[%q] checks %s, which ferry %s does not have", mode, key, m)
				}
			}
		}
	}
}

func writeFile(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "node.yaml")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// `ferry config check` reports every problem with its line: unknown key,
// wrong type, bad values refused by a flag and by the command's checks;
// and the FERRY_* variables of its environment.
func TestConfigCheckProblems(t *testing.T) {
	path := writeFile(t, `mode: edge
kafka-adr: ":9092"
default-partitions: "3"
mqtt-connect-timeout: 10
kafka-addr: 9092
mqtt-rule:
  - "factory/+site/+device/telemetry -> telemetry key={device}"
  - "no arrow"
mirror-zstd-level: hight
max-disk-policy: sometimes
auth: password
log-level: loud
`)
	t.Setenv("FERRY_MIRROR_TOKEN", "fine")
	t.Setenv("FERRY_MIRROR_PRIORITY", "alarms*=x")
	code, out, errOut := ferry(t, "config", "check", path)
	want := []string{
		path + ":2: kafka-adr: unknown key: ferry edge has no flag --kafka-adr (did you mean kafka-addr?)",
		path + `:3: default-partitions: want a whole number, got the string "3"`,
		path + `:4: mqtt-connect-timeout: bad value "10": must be a duration like "30s" or "5m"`,
		path + `:5: kafka-addr: bad value "9092": want host:port, e.g. ":9092" or "127.0.0.1:9092"`,
		path + `:8: mqtt-rule: bad value "no arrow": `,
		path + `:9: mirror-zstd-level: bad value "hight": want fastest, default, better or best`,
		path + `:10: max-disk-policy: bad value "sometimes": `,
		path + `:11: auth: bad value "password": want none or registry`,
		path + `:12: log-level: bad value "loud": want debug, info, warn or error`,
		`FERRY_MIRROR_PRIORITY: mirror-priority: bad value "alarms*=x": `,
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(got) != len(want) || !strings.Contains(errOut, "not a valid config (10 problem(s))") {
		t.Fatalf("exit %d, want 1; %d lines, want %d:\n%s%s", code, len(got), len(want), out, errOut)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("got  %s\nwant %s...", got[i], want[i])
		}
	}

	code, out, _ = ferry(t, "config", "check", path, "--json")
	var r configReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.Valid || len(r.Problems) != len(want) {
		t.Fatalf("--json: %d %v %s", code, err, out)
	}
	if p := r.Problems[3]; p.Source != path || p.Line != 5 || p.Key != "kafka-addr" || !strings.HasPrefix(p.Message, `bad value "9092"`) {
		t.Errorf("--json problem: %+v", p)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"config", "check"}, 2, "want 1 argument"},
		{[]string{"config", "check", filepath.Join(t.TempDir(), "nope.yaml")}, 1, "no such file"},
		{[]string{"config", "check", writeFile(t, "mode: center\n")}, 1, `:1: mode: want edge or full, got "center"`},
		{[]string{"config", "check", writeFile(t, "data-dir: x\n")}, 1, "mode: missing"},
		{[]string{"config", "check", writeFile(t, "mode: edge\nmirror-class-share: 2=20%,1=90%\n")}, 1,
			`:2: mirror-class-share: bad value "2=20%,1=90%": class shares "2=20%,1=90%": the shares add up to 110%`},
		{[]string{"config", "check", writeFile(t, "mode: full\nmax-partitions: -1\n")}, 1, `:2: max-partitions: bad value "-1": want 0 (no cap) or more`},
		{[]string{"config", "--help"}, 0, "check"},
		{[]string{"config", "check", "--help"}, 0, "Example:"},
	} {
		code, out, errOut := ferry(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ferry %v: exit %d, want %d; %q does not contain %q", tc.args, code, tc.code, out+errOut, tc.want)
		}
	}
}

// A valid file: what differs from the defaults, from which line, and the
// variables that override it.
func TestConfigCheckValid(t *testing.T) {
	path := writeFile(t, "mode: full\nkafka-addr: \":19092\"\nmirror-token: [gw1=a, gw2=b]\n")
	t.Setenv("FERRY_ADMIN_ADDR", "127.0.0.1:18080")
	t.Setenv("FERRY_NO_SUCH_KEY", "1")
	code, out, errOut := ferry(t, "config", "check", path)
	for _, want := range []string{
		"a valid ferry full config; 3 of its",
		"kafka-addr    :19092",
		"(line 2; default :9092)",
		"[gw1=a gw2=b]",
		"(FERRY_ADMIN_ADDR; default 127.0.0.1:8080)",
		"FERRY_NO_SUCH_KEY is no key of ferry full: ignored",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("exit %d; output does not contain %q:\n%s%s", code, want, out, errOut)
		}
	}
	_, out, _ = ferry(t, "config", "check", path, "--json")
	var r configReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	bySource := map[string][]string{}
	for _, s := range r.Settings {
		bySource[s.Source] = append(bySource[s.Source], s.Key)
		if s.Key == "mirror-token" && !reflect.DeepEqual(s.Value, []any{"gw1=a", "gw2=b"}) {
			t.Errorf("mirror-token: %#v", s.Value)
		}
	}
	if !reflect.DeepEqual(bySource["file"], []string{"kafka-addr", "mirror-token"}) || !reflect.DeepEqual(bySource["env"], []string{"admin-addr"}) {
		t.Errorf("sources: %v", bySource)
	}
}

// A node command's settings: defaults < file < command line < FERRY_*,
// and FERRY_CONFIG names the file over --config.
func TestNodeConfigPrecedence(t *testing.T) {
	file := writeFile(t, `mode: edge
data-dir: /from/file
log-level: warn
kafka-addr: "127.0.0.1:1"
mqtt-rule: ["a/+x -> a"]
mirror-topics: [t1, t2]
`)
	other := writeFile(t, "mode: edge\ndata-dir: /from/other\n")
	newFlags := func() (*pflag.FlagSet, action) { return nodeFlagSet(t, "edge") }
	args := []string{"--config", file, "--log-level", "error", "--kafka-addr", "127.0.0.1:2", "--mirror-topics", "t3"}
	fs, _, err := configure("edge", newFlags, args, []string{"FERRY_KAFKA_ADDR=127.0.0.1:3", "FERRY_MQTT_ADDR="}, file)
	if err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return fs.Lookup(name).Value.String() }
	for name, want := range map[string]string{
		"data-dir":      "/from/file",     // the file over the default
		"log-level":     "error",          // the command line over the file
		"kafka-addr":    "127.0.0.1:3",    // the environment over both
		"mqtt-addr":     "",               // an empty variable is a value
		"mqtt-rule":     "[a/+x -> a]",    // a list from the file replaces the default
		"mirror-topics": "[t3]",           // and the command line's replaces the file's
		"admin-addr":    "127.0.0.1:8080", // the default: loopback
		"config":        file,             // what the node logs
	} {
		if got := get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if cf := nodeConfig(fs); cf.file == nil || cf.file.Path != file || len(cf.env) != 2 {
		t.Errorf("the node's record of its config: %+v", cf)
	}

	fs, _, err = configure("edge", newFlags, args, []string{"FERRY_CONFIG=" + other}, file)
	if err != nil {
		t.Fatal(err)
	}
	if got := fs.Lookup("data-dir").Value.String(); got != "/from/other" {
		t.Errorf("FERRY_CONFIG over --config: data-dir %q", got)
	}
}

// A node command with a bad config file or variable stops before starting,
// with a usage error (exit 2) naming the line or the variable.
func TestNodeConfigErrors(t *testing.T) {
	bad := writeFile(t, "mode: edge\n\nmirror-zstd-level: hight\n")
	full := writeFile(t, "mode: full\n")
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"edge", "--config", bad}, "", bad + `:3: mirror-zstd-level: bad value "hight"`},
		{[]string{"edge", "--config", full}, "", full + ":1: mode: the file is for ferry full, not ferry edge"},
		{[]string{"edge", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, "", "--config: open "},
		{[]string{"full"}, "FERRY_MIRROR_TOKEN=gw1", `FERRY_MIRROR_TOKEN: mirror-token: bad value "gw1": want EDGE=TOKEN`},
		{[]string{"edge"}, "FERRY_CONFIG=" + bad, bad + ":3: mirror-zstd-level"},
	} {
		if k, v, ok := strings.Cut(tc.env, "="); ok {
			t.Setenv(k, v)
		}
		// --log-format bogus stops the command before it starts a node if
		// the config error does not.
		code, _, errOut := ferry(t, append(tc.args, "--log-format", "bogus")...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("ferry %v (%s): exit %d, want 2; %q does not contain %q", tc.args, tc.env, code, errOut, tc.want)
		}
		if k, _, ok := strings.Cut(tc.env, "="); ok {
			os.Unsetenv(k)
		}
	}
}
