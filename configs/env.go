package configs

import (
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// EnvPrefix starts every variable that overrides a flag.
const EnvPrefix = "FERRY_"

// EnvName is the environment variable that overrides the flag named flag:
// FERRY_ and the name in upper case, dashes as underscores
// (kafka-addr: FERRY_KAFKA_ADDR).
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// EnvSetting is an environment variable that set a flag.
type EnvSetting struct {
	Var   string `json:"var"`
	Key   string `json:"key"`
	Value string `json:"value"`
}

// ApplyEnv sets every flag of fs whose variable ([EnvName]) is in environ
// (os.Environ's KEY=VALUE form), whatever the file and the command line
// set, so call it last. A variable that is set applies, even empty. A list
// flag's variable holds one value per line, each as the flag takes it from
// the command line; empty lines are skipped. Each value is checked by the
// flag's parser and then check. It returns the variables applied, in
// the order fs visits its flags, and every refused one as [Errors].
func ApplyEnv(fs *pflag.FlagSet, environ []string, check Check) ([]EnvSetting, error) {
	env := envMap(environ)
	var applied []EnvSetting
	var errs Errors
	fs.VisitAll(func(fl *pflag.Flag) {
		name := EnvName(fl.Name)
		raw, ok := env[name]
		if !ok || fl.Name == "help" {
			return
		}
		if err := setEnv(fl, raw, check); err != nil {
			errs = append(errs, &Error{Source: name, Key: fl.Name, Msg: err.Error()})
			return
		}
		applied = append(applied, EnvSetting{Var: name, Key: fl.Name, Value: raw})
	})
	return applied, errs.err()
}

func setEnv(fl *pflag.Flag, raw string, check Check) error {
	sv, isList := fl.Value.(pflag.SliceValue)
	if !isList {
		return set(fl, []value{{s: raw}}, false, check)
	}
	if err := sv.Replace(nil); err != nil {
		return err
	}
	for _, line := range strings.Split(raw, "\n") {
		line = strings.TrimSuffix(line, "\r")
		if line == "" {
			continue
		}
		if err := fl.Value.Set(line); err != nil {
			return refused(fl, line, err)
		}
		if check != nil {
			if err := check(fl.Name, line); err != nil {
				return refused(fl, line, err)
			}
		}
	}
	fl.Changed = true
	return nil
}

// UnknownEnv lists the FERRY_* variables of environ that name no flag of
// fs, sorted. ApplyEnv ignores them: a host may carry the variables of
// the other command, or of tools around ferry.
func UnknownEnv(fs *pflag.FlagSet, environ []string) []string {
	known := map[string]bool{}
	fs.VisitAll(func(fl *pflag.Flag) { known[EnvName(fl.Name)] = true })
	var unknown []string
	for name := range envMap(environ) {
		if strings.HasPrefix(name, EnvPrefix) && !known[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	return unknown
}

// envMap indexes environ by name; the first entry of a name wins, as in
// os.Getenv.
func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, dup := m[k]; !dup {
				m[k] = v
			}
		}
	}
	return m
}
