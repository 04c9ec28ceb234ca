package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// The subcommands that show something (list, show, describe, status) share
// one shape: take no argument or the one that names the thing, get its view
// from a stopped node's files or a running node's admin API, and print the
// admin API's answer as it came (--json) or a table. Those that change one
// named thing share another: change it, say so.

// showAction is the action of a subcommand that shows a view V (or what a
// change gave back, as acls delete does): of the thing its one argument
// names (arg, as the usage calls it), or of them all when arg is "". get
// fetches the view and, from a running node, the admin API's answer as it
// came (nil when the view was built from a data directory); --json
// (asJSON) prints that answer, or the view's JSON, and otherwise print
// prints the view.
func showAction[V any](arg string, asJSON *bool, get func(name string) (V, []byte, error), print func(io.Writer, V) error) action {
	return func(args []string, out io.Writer) error {
		var names []string
		if arg != "" {
			names = []string{arg}
		}
		if err := exactArgs(args, names...); err != nil {
			return err
		}
		var name string
		if arg != "" {
			name = args[0]
		}
		v, raw, err := get(name)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(out, raw, v)
		}
		return print(out, v)
	}
}

// apiPath is where the admin API serves a view: path, or path/NAME for the
// one named (name not "").
func apiPath(path, name string) string {
	if name == "" {
		return path
	}
	return path + "/" + pathEscape(name)
}

// dataView is the flags function of a subcommand that shows a view V with
// --data-dir or --admin and --json (see showAction). With --data-dir, open
// (localOrAdmin.run for the log, localOrAdmin.registry for the device
// registry) gives local the stopped node's files to build the view from;
// otherwise it is the admin API's answer at apiPath(path, name).
func dataView[L, V any](open func(localOrAdmin, func(L) error, func(*adminClient) error) error, arg, path string,
	local func(l L, name string) (V, error), print func(io.Writer, V) error) func(*pflag.FlagSet) action {
	return func(fs *pflag.FlagSet) action {
		where := localOrAdminFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		return showAction(arg, asJSON, func(name string) (v V, raw []byte, err error) {
			err = open(where, func(l L) (err error) {
				v, err = local(l, name)
				return err
			}, func(c *adminClient) (err error) {
				raw, err = c.get(apiPath(path, name), &v)
				return err
			})
			return v, raw, err
		}, print)
	}
}

// nodeView is the flags function of a subcommand that shows a running
// node's view V with --admin and --json (see showAction): the admin API's
// answer at apiPath(path, name). print gets, besides the view, the client
// (which names the node) and the answer as it came.
func nodeView[V any](arg, path string, print func(out io.Writer, v V, c *adminClient, body []byte) error) func(*pflag.FlagSet) action {
	return func(fs *pflag.FlagSet) action {
		admin := adminFlags(fs)
		asJSON := fs.Bool("json", false, "print JSON")
		var c *adminClient
		var body []byte
		return showAction(arg, asJSON, func(name string) (v V, _ []byte, err error) {
			if c, err = admin.client(); err != nil {
				return v, nil, err
			}
			body, err = c.get(apiPath(path, name), &v)
			return v, body, err
		}, func(out io.Writer, v V) error { return print(out, v, c, body) })
	}
}

// changeAction is the action of a subcommand that changes the one thing its
// argument names (arg, as the usage calls it) and says so: change gets the
// name, and done, a format whose one %s is the name, is printed once it
// succeeded.
func changeAction(arg, done string, change func(name string) error) action {
	return func(args []string, out io.Writer) error {
		if err := exactArgs(args, arg); err != nil {
			return err
		}
		if err := change(args[0]); err != nil {
			return err
		}
		_, err := fmt.Fprintf(out, done+"\n", args[0])
		return err
	}
}

// send is the admin-API side of a change: it sends body (JSON, when not
// nil) to path with method, and the answer, once not an error, is not
// needed.
func send(method, path string, body any) func(*adminClient) error {
	return func(c *adminClient) error {
		_, err := c.call(method, path, body, nil)
		return err
	}
}
