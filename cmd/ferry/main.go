// Command ferry is the one binary of the ferry broker: `ferry edge` runs a
// node; the other subcommands inspect and manage data and nodes. main only
// parses, dispatches and sets the exit code: 0 success, 1 failure, 2 usage.
package main

import (
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
	return 1
}

func root() *command {
	return &command{
		name:    "ferry",
		summary: "an event-streaming broker for the edge: MQTT and Kafka in, a durable partitioned log, mirrored upstream",
		example: "ferry edge --data-dir ./data\n  ferry status --admin http://localhost:8080\n  ferry topics create telemetry --partitions 4 --admin http://localhost:8080",
		subs: []*command{edgeCommand(), fullCommand(), statusCommand(), topicsCommand(), groupsCommand(), produceCommand(), consumeCommand(),
			devicesCommand(), usersCommand(), aclsCommand(), mirrorCommand(), clusterCommand(), logCommand(), configCommand(), certsCommand(), versionCommand()},
	}
}
