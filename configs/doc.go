// Package configs reads a node's YAML config file and the FERRY_*
// environment onto the flags of the command that runs the node (`ferry
// edge`, `ferry full`). It owns the file format, the precedence rules and
// the example files beside it (edge.yaml, full.yaml), which are test
// fixtures.
//
// # The flags are the config
//
// A file is one YAML mapping. Every key is the name of one of the
// command's flags, without the dashes (`kafka-addr: ":9092"` is
// `--kafka-addr :9092`), and every value is checked by that flag's own
// parser. So names, defaults, types and help text live in one place, the
// flags, and a new flag is a new key with no code here. There is
// deliberately no config struct of its own beside them: a second list of
// names and defaults would fall behind the flags. One more key, `mode`
// (edge or full), says which command the file is for, and is required.
//
// Values:
//   - a flag that takes one value takes a YAML scalar: booleans are true or
//     false, numbers are unquoted integers, durations are Go durations
//     (`10s`, `2m`), and a string flag takes any scalar; `key:` with no
//     value is the empty string;
//   - a repeatable or list flag (`mqtt-rule`, `mirror-topics`, full's
//     `mirror-token`) takes a YAML sequence, each item one value as the
//     flag would take it once; `key: []` or `key:` is the empty list.
//   - a flag the caller marks as a path ([MarkPath]: the data directory,
//     certificates, keys, CA bundles) takes a path relative to the file's
//     directory when it is not absolute, as Prometheus has it: a file works
//     wherever the node is started from. The command line and FERRY_*
//     variables stay relative to the working directory.
//
// Strict: an unknown key, a key given twice, a value of the wrong YAML type
// and a value the flag (or the command's Check) refuses are each an error
// naming the file, the line and the key ([Error]); every problem of a file
// is reported at once ([Errors]).
//
// # Precedence
//
// defaults < file < command line < FERRY_* environment. The caller applies
// a file to a fresh flag set before parsing the command line ([File.Apply]),
// so a flag given on the command line replaces the file's value (a list
// too), then applies the environment ([ApplyEnv]): FERRY_KAFKA_ADDR sets
// --kafka-addr, whatever the file and the command line say. A list flag's
// variable holds one value per line.
//
// # What it must never do
//
// Import another ferry package; start, open or dial anything; read any
// file but the config file; hold a default, a key name or a check of its
// own (the flags and the caller's Check are the only ones); accept a key
// that is not a flag, or let a config file name another config file.
package configs
