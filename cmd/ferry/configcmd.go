package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/klauspost/compress/zstd"
	"github.com/spf13/pflag"

	"ferry/configs"
	"ferry/edge"
	"ferry/edge/cluster"
	"ferry/ingest/kafka"
	"ferry/ingest/mqtt"
	flog "ferry/log"
	"ferry/mirror"
)

func configCommand() *command {
	return &command{
		name:    "config",
		summary: "node config files (YAML; see configs/edge.yaml and configs/full.yaml)",
		example: "ferry config check configs/edge.yaml",
		subs:    []*command{configCheckCommand()},
	}
}

func configCheckCommand() *command {
	return &command{
		name: "check",
		args: "FILE",
		summary: "validate a node's config file without starting it: the command it is for (its mode key), every key and value, " +
			"and the FERRY_* variables of this environment; exit 1 on any problem",
		example: "ferry config check configs/edge.yaml\n" +
			"ferry config check /etc/ferry/full.yaml --json",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			asJSON := fs.Bool("json", false, "print the result, every key's value and default, as JSON")
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args, "FILE"); err != nil {
					return err
				}
				r := checkConfig(args[0], os.Environ())
				if *asJSON {
					enc := json.NewEncoder(out)
					enc.SetIndent("", "  ")
					if err := enc.Encode(r); err != nil {
						return err
					}
				} else {
					r.print(out)
				}
				if !r.Valid {
					return fmt.Errorf("%s: not a valid config (%d problem(s))", r.File, len(r.Problems))
				}
				return nil
			}
		},
	}
}

// configReport is the result of `ferry config check`.
type configReport struct {
	File     string          `json:"file"`
	Mode     string          `json:"mode,omitempty"`
	Valid    bool            `json:"valid"`
	Problems []configProblem `json:"problems"`
	// Settings is every key with the value the node would start with
	// (default, file, then environment; no command line).
	Settings   []configSetting      `json:"settings,omitempty"`
	Env        []configs.EnvSetting `json:"env,omitempty"`
	IgnoredEnv []string             `json:"ignored_env,omitempty"`
}

// configProblem is one problem found, as configs.Error says it.
type configProblem struct {
	Source  string `json:"source"` // the file, or a variable
	Line    int    `json:"line,omitempty"`
	Key     string `json:"key,omitempty"`
	Message string `json:"message"`
	Text    string `json:"text"` // all of it, as printed
}

type configSetting struct {
	Key     string `json:"key"`
	Value   any    `json:"value"` // a string, or a list of them
	Default string `json:"default"`
	Source  string `json:"source"` // default, file or env
	Line    int    `json:"line,omitempty"`
}

func checkConfig(path string, environ []string) *configReport {
	r := &configReport{File: path, Problems: []configProblem{}}
	fail := func(err error) *configReport {
		var errs configs.Errors
		if !errors.As(err, &errs) {
			errs = configs.Errors{{Source: path, Msg: err.Error()}}
		}
		for _, e := range errs {
			r.Problems = append(r.Problems, configProblem{e.Source, e.Line, e.Key, e.Msg, e.Error()})
		}
		return r
	}
	f, err := configs.Load(path)
	if err != nil {
		return fail(err)
	}
	r.Mode = f.Mode
	node := nodeCommand(f.Mode)
	if node == nil {
		return fail(configs.Errors{{Source: path, Line: f.ModeLine, Key: "mode", Msg: fmt.Sprintf("want edge or full, got %q", f.Mode)}})
	}
	fs := pflag.NewFlagSet("ferry "+f.Mode, pflag.ContinueOnError)
	node.flags(fs)
	markNodePaths(fs)
	var errs configs.Errors
	if err := f.Apply(fs, f.Mode, nodeCheck(f.Mode)); err != nil {
		errors.As(err, &errs)
	}
	r.Env, err = configs.ApplyEnv(fs, environ, nodeCheck(f.Mode))
	if err != nil {
		var envErrs configs.Errors
		errors.As(err, &envErrs)
		errs = append(errs, envErrs...)
	}
	r.IgnoredEnv = configs.UnknownEnv(fs, environ)
	lines := map[string]int{}
	for _, s := range f.Settings {
		lines[s.Key] = s.Line
	}
	fromEnv := map[string]string{}
	for _, e := range r.Env {
		fromEnv[e.Key] = e.Var
	}
	if len(errs) == 0 {
		errs = checkNodeFiles(fs, path, lines, fromEnv)
	}
	if len(errs) > 0 {
		return fail(errs)
	}
	fs.SortFlags = false
	fs.VisitAll(func(fl *pflag.Flag) {
		if fl.Name == "config" {
			return
		}
		s := configSetting{Key: fl.Name, Value: fl.Value.String(), Default: fl.DefValue, Source: "default", Line: lines[fl.Name]}
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			s.Value = append([]string{}, sv.GetSlice()...)
		}
		switch {
		case fromEnv[fl.Name] != "":
			s.Source = "env"
		case s.Line > 0:
			s.Source = "file"
		}
		r.Settings = append(r.Settings, s)
	})
	r.Valid = true
	return r
}

// print writes the report for people: the problems, one per line as
// FILE:LINE: KEY: MESSAGE; or what differs from the defaults.
func (r *configReport) print(out io.Writer) {
	if !r.Valid {
		for _, p := range r.Problems {
			fmt.Fprintln(out, p.Text)
		}
		return
	}
	var changed []configSetting
	for _, s := range r.Settings {
		if fmt.Sprint(s.Value) != s.Default && !(s.Default == "[]" && fmt.Sprint(s.Value) == "[]") {
			changed = append(changed, s)
		}
	}
	fmt.Fprintf(out, "%s: a valid ferry %s config; %d of its %d keys differ from the defaults\n", r.File, r.Mode, len(changed), len(r.Settings))
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, s := range changed {
		where := fmt.Sprintf("line %d", s.Line)
		if s.Source == "env" {
			where = configs.EnvName(s.Key)
		}
		fmt.Fprintf(tw, "  %s\t%s\t(%s; default %s)\n", s.Key, shown(fmt.Sprint(s.Value)), where, shown(s.Default))
	}
	tw.Flush()
	for _, e := range r.Env {
		fmt.Fprintf(out, "%s overrides %s\n", e.Var, e.Key)
	}
	for _, v := range r.IgnoredEnv {
		fmt.Fprintf(out, "%s is no key of ferry %s: ignored\n", v, r.Mode)
	}
}

// shown is a value for people: the empty string as "".
func shown(v string) string {
	if v == "" {
		return `""`
	}
	return v
}

// nodeCommand is the node command a config file's mode names; nil if
// there is none.
func nodeCommand(mode string) *command {
	for _, c := range root().subs {
		if c.name != mode || c.flags == nil {
			continue
		}
		fs := pflag.NewFlagSet(mode, pflag.ContinueOnError)
		c.flags(fs)
		if nodeConfig(fs) != nil {
			return c
		}
	}
	return nil
}

// nodePaths are the node flags that name a file or a directory. In a
// config file a relative one is relative to the file's directory
// (configs.MarkPath); `ferry config check` reads the files each names.
var nodePaths = []string{
	"data-dir",
	"kafka-tls-cert", "kafka-tls-key", "kafka-tls-client-ca",
	"admin-tls-cert", "admin-tls-key", "admin-tls-client-ca",
	"mqtt-tls-cert", "mqtt-tls-key", "mqtt-tls-client-ca",
	"mirror-tls-cert", "mirror-tls-key", "mirror-tls-client-ca", "mirror-tls-ca",
	"cluster-tls-cert", "cluster-tls-key", "cluster-tls-ca",
}

// markNodePaths marks a node command's path flags for the config file.
func markNodePaths(fs *pflag.FlagSet) { configs.MarkPath(fs, nodePaths...) }

// checkNodeFiles reads what the path flags of fs name, as the node would
// at start: each listener's certificate and key must load as a pair, each
// CA bundle must hold a certificate, the data directory must be a
// directory if it exists (the node creates it otherwise). A problem names
// the file's line or the variable the value came from.
func checkNodeFiles(fs *pflag.FlagSet, path string, lines map[string]int, fromEnv map[string]string) configs.Errors {
	var errs configs.Errors
	value := func(key string) string {
		if fl := fs.Lookup(key); fl != nil {
			return fl.Value.String()
		}
		return ""
	}
	problem := func(key, format string, a ...any) {
		e := &configs.Error{Source: path, Line: lines[key], Key: key, Msg: fmt.Sprintf(format, a...)}
		if v := fromEnv[key]; v != "" {
			e.Source, e.Line = v, 0
		}
		errs = append(errs, e)
	}
	if dir := value("data-dir"); dir != "" {
		if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
			problem("data-dir", "%s is not a directory", dir)
		} else if err != nil && !errors.Is(err, iofs.ErrNotExist) {
			problem("data-dir", "%v", err)
		}
	}
	for _, l := range []string{"kafka", "admin", "mqtt", "mirror", "cluster"} {
		cert, key := value(l+"-tls-cert"), value(l+"-tls-key")
		switch {
		case cert == "" && key == "":
		case cert == "":
			problem(l+"-tls-key", "set without %s-tls-cert", l)
		case key == "":
			problem(l+"-tls-cert", "set without %s-tls-key", l)
		default:
			if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
				problem(l+"-tls-cert", "%s and %s: %v", cert, key, err)
			}
		}
	}
	for _, k := range []string{"kafka-tls-client-ca", "admin-tls-client-ca", "mqtt-tls-client-ca", "mirror-tls-client-ca", "mirror-tls-ca", "cluster-tls-ca"} {
		ca := value(k)
		if ca == "" {
			continue
		}
		b, err := os.ReadFile(ca)
		if err != nil {
			problem(k, "%v", err)
		} else if !x509.NewCertPool().AppendCertsFromPEM(b) {
			problem(k, "%s holds no PEM certificate", ca)
		}
	}
	return errs
}

// nodeChecks are the checks of node flag values beyond the flags' own
// parsers, which the commands otherwise make only once they run: with
// them a bad value in a config file or a FERRY_* variable is an error
// naming its line or variable, and `ferry config check` finds it. Each
// calls the parser the command itself uses. A flag missing here is
// checked at start (without a line).
var nodeChecks = map[string]map[string]func(string) error{
	"edge": {
		"mqtt-addr":     hostPort,
		"mqtt-tls-addr": hostPort,
		"mqtt-ws-addr":  hostPort,
		"mirror-to":     hostPort,
		"mqtt-rule": func(v string) error {
			if v == "" { // the command skips it
				return nil
			}
			_, err := mqtt.ParseRule(v)
			return err
		},
		"mqtt-bridge": func(v string) error { _, err := mqtt.ParseBridge(v); return err },
		"auth": func(v string) error {
			if v != edge.AuthNone && v != edge.AuthRegistry {
				return fmt.Errorf("want %s or %s", edge.AuthNone, edge.AuthRegistry)
			}
			return nil
		},
		"max-disk-policy":      func(v string) error { _, err := flog.ParseBudgetPolicy(v); return err },
		"mirror-rate-schedule": func(v string) error { _, err := mirror.ParseSchedule(v); return err },
		"mirror-priority":      func(v string) error { _, err := mirror.ParseClasses(v); return err },
		"mirror-class-share":   func(v string) error { _, err := mirror.ParseShares(v); return err },
		"mirror-catchup":       func(v string) error { _, err := mirror.ParseCatchUp(v); return err },
		"mirror-kafka-sasl":    func(v string) error { _, err := mirror.ParseKafkaSASL(v, "", ""); return err },
		"mirror-zstd-level": func(v string) error {
			if ok, _ := zstd.EncoderLevelFromString(v); !ok {
				return errors.New("want fastest, default, better or best")
			}
			return nil
		},
	},
	"full": {
		"mirror-addr":  hostPort,
		"cluster-addr": hostPort,
		"cluster-voters": func(v string) error {
			if v == "" {
				return nil // a node alone
			}
			_, err := cluster.ParseVoters(v)
			return err
		},
		"mirror-token": func(v string) error {
			if e, t, ok := strings.Cut(v, "="); !ok || e == "" || t == "" {
				return errors.New("want EDGE=TOKEN")
			}
			return nil
		},
		"offsets-topic-partitions":         inRange(1, 1000),
		"offsets-topic-replication-factor": inRange(0, cluster.MaxReplicationFactor),
	},
	"": { // every node command
		"admin-addr":               hostPort,
		"kafka-addr":               hostPort,
		"kafka-advertised":         hostPort,
		"kafka-sasl":               func(v string) error { _, err := kafka.ParseSASLMechanisms(v); return err },
		"log-level":                func(v string) error { _, err := newLogger(io.Discard, v, "text"); return unwrapUsage(err) },
		"log-format":               func(v string) error { _, err := newLogger(io.Discard, "info", v); return unwrapUsage(err) },
		"max-partitions-per-topic": notNegative,
		"max-partitions":           notNegative,
	},
}

// inRange checks a count between lo and hi.
func inRange(lo, hi int64) func(string) error {
	return func(v string) error {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && (n < lo || n > hi) {
			return fmt.Errorf("want %d to %d", lo, hi)
		}
		return nil // not a number: the flag's own parser says so
	}
}

// notNegative checks a cap whose 0 means none.
func notNegative(v string) error {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n < 0 {
		return errors.New("want 0 (no cap) or more")
	}
	return nil // not a number: the flag's own parser says so
}

// nodeCheck is the configs.Check of the node command mode.
func nodeCheck(mode string) configs.Check {
	return func(key, v string) error {
		check := nodeChecks[mode][key]
		if check == nil {
			check = nodeChecks[""][key]
		}
		if check == nil {
			return nil
		}
		return check(v)
	}
}

// hostPort checks a listen or dial address; empty is allowed (off, or
// the default).
func hostPort(v string) error {
	if v == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(v); err != nil {
		return errors.New(`want host:port, e.g. ":9092" or "127.0.0.1:9092"`)
	}
	return nil
}

// unwrapUsage keeps what a usage error says after its flag name.
func unwrapUsage(err error) error {
	if err == nil {
		return nil
	}
	if _, after, ok := strings.Cut(err.Error(), ": "); ok {
		return errors.New(after)
	}
	return err
}
