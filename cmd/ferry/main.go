// Command ferry is the one binary of the ferry broker: `ferry edge` runs a
// node; the other subcommands inspect and manage data and nodes. main only
// parses, dispatches and sets the exit code: 0 success, 1 failure, 2 usage,
// or the code a command chose ([exitError]: 130 for an interrupted produce).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	err := root().dispatch(args, stdout)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "ferry:", err)
	if isUsage(err) {
		return 2
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// exitError is a failure with an exit code of its own.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

func root() *command {
	return &command{
		name:    "ferry",
		summary: "an event-streaming broker for the edge: MQTT and Kafka in, a durable partitioned log, mirrored upstream",
		example: "ferry edge --data-dir ./data\n  ferry status --admin http://localhost:8080\n  ferry topics create telemetry --partitions 4 --admin http://localhost:8080",
		subs: []*command{edgeCommand(), fullCommand(), statusCommand(), topicsCommand(), groupsCommand(), produceCommand(), consumeCommand(),
			devicesCommand(), usersCommand(), aclsCommand(), mirrorCommand(), clusterCommand(), logCommand(), configCommand(), certsCommand(), versionCommand()},
	}
}
