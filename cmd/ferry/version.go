package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/spf13/pflag"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func versionCommand() *command {
	return &command{
		name:    "version",
		summary: "print ferry's version, the Go version and the platform",
		example: "ferry version --json",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			asJSON := fs.Bool("json", false, "print JSON")
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args); err != nil {
					return err
				}
				return printVersion(out, *asJSON)
			}
		},
	}
}

// printVersion prints what `ferry version` and `ferry --version` print.
func printVersion(out io.Writer, asJSON bool) error {
	v := map[string]string{"version": version, "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH}
	if asJSON {
		return json.NewEncoder(out).Encode(v)
	}
	_, err := fmt.Fprintf(out, "ferry %s (%s, %s/%s)\n", v["version"], v["go"], v["os"], v["arch"])
	return err
}
