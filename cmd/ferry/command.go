package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"ferry/configs"
)

// command is one node of the command tree: a group of subcommands, or a
// leaf that parses its own flags and runs.
type command struct {
	name    string
	args    string // argument synopsis for usage, e.g. "NAME"
	summary string
	example string
	subs    []*command
	// flags declares the leaf's flags on fs and returns its action, which
	// receives the positional arguments.
	flags func(fs *pflag.FlagSet) func(args []string, out io.Writer) error
}

// action is what a leaf's flags function returns.
type action = func(args []string, out io.Writer) error

// usageError marks a mistake in how a command was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

func isUsage(err error) bool {
	var u usageError
	return errors.As(err, &u) || errors.Is(err, pflag.ErrHelp)
}

func (c *command) dispatch(args []string, out io.Writer) error {
	return c.dispatchPath(c.name, args, out)
}

func (c *command) dispatchPath(path string, args []string, out io.Writer) error {
	if c.flags == nil {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			c.printGroupUsage(path, out)
			if len(args) == 0 {
				return usagef("%s: missing subcommand", path)
			}
			return nil
		}
		// `ferry --version` (and -V) is `ferry version`, as most tools have it.
		if path == "ferry" && (args[0] == "--version" || args[0] == "-V") {
			return printVersion(out, false)
		}
		var names []string
		for _, s := range c.subs {
			if s.name == args[0] {
				return s.dispatchPath(path+" "+s.name, args[1:], out)
			}
			names = append(names, s.name)
		}
		return usagef("%s: unknown command %q%s (see '%s --help')", path, args[0], didYouMean(args[0], names, ""), path)
	}
	newFlags := func() (*pflag.FlagSet, action) {
		fs := pflag.NewFlagSet(path, pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		act := c.flags(fs)
		fs.SortFlags = false
		return fs, act
	}
	fs, act := newFlags()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			c.printLeafUsage(path, fs, out)
			return nil
		}
		return usagef("%s: %v%s (see '%s --help')", path, err, suggestFlag(err, fs), path)
	}
	// A node command (it has --config) takes its settings from a config
	// file and the environment too: its flags are built again in order.
	if cf := nodeConfig(fs); cf != nil {
		var err error
		if fs, act, err = configure(c.name, newFlags, args, os.Environ(), cf.path); err != nil {
			return err
		}
	}
	return act(fs.Args(), out)
}

func (c *command) printGroupUsage(path string, out io.Writer) {
	fmt.Fprintf(out, "%s — %s\n\nUsage:\n  %s <command> [flags]\n\nCommands:\n", path, c.summary, path)
	subs := append([]*command(nil), c.subs...)
	sort.Slice(subs, func(i, j int) bool { return subs[i].name < subs[j].name })
	for _, s := range subs {
		fmt.Fprintf(out, "  %-10s %s\n", s.name, s.summary)
	}
	if c.example != "" {
		fmt.Fprintf(out, "\nExample:\n  %s\n", c.example)
	}
	fmt.Fprintf(out, "\nRun '%s <command> --help' for a command's flags.\n", path)
}

func (c *command) printLeafUsage(path string, fs *pflag.FlagSet, out io.Writer) {
	fmt.Fprintf(out, "%s — %s\n\nUsage:\n  %s", path, c.summary, path)
	if c.args != "" {
		fmt.Fprintf(out, " %s", c.args)
	}
	fmt.Fprintf(out, " [flags]\n\nFlags:\n%s", fs.FlagUsages())
	if c.example != "" {
		fmt.Fprintf(out, "\nExample:\n  %s\n", strings.ReplaceAll(c.example, "\n", "\n  "))
	}
}

// exactArgs checks the number of positional arguments.
func exactArgs(args []string, names ...string) error {
	if len(args) != len(names) {
		return usagef("want %d argument(s) (%s), got %d", len(names), strings.Join(names, " "), len(args))
	}
	return nil
}

// suggestFlag names the closest flag of fs to the unknown one err is
// about: ", did you mean --partitions?" for --partition; "" when none is
// close or err is about something else.
func suggestFlag(err error, fs *pflag.FlagSet) string {
	msg := err.Error()
	var name string
	switch {
	case strings.HasPrefix(msg, "unknown flag: --"):
		name = strings.TrimPrefix(msg, "unknown flag: --")
	case strings.HasPrefix(msg, "unknown shorthand flag: "):
		// "unknown shorthand flag: 'x' in -xyz": no useful guess for one letter.
		return ""
	default:
		return ""
	}
	var names []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !f.Hidden {
			names = append(names, f.Name)
		}
	})
	return didYouMean(name, names, "--")
}

// didYouMean is ", did you mean PREFIX+NAME?" for the candidate closest to
// s in edit distance, if it is close (at most a third of its length, and
// at least 1, or s is a prefix of it); "" otherwise.
func didYouMean(s string, candidates []string, prefix string) string {
	best, bestDist := "", -1
	for _, c := range candidates {
		d := configs.EditDistance(s, c)
		if strings.HasPrefix(c, s) && len(s) >= 3 {
			d = min(d, 1)
		}
		if bestDist < 0 || d < bestDist || (d == bestDist && c < best) {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist > max(1, len(best)/3) {
		return ""
	}
	return fmt.Sprintf(", did you mean %s%s?", prefix, best)
}
