package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"ferry/edge"
	"ferry/mirror"
)

func fullCommand() *command {
	return &command{
		name:    "full",
		summary: "run a central (full) node: the Kafka listener and the mirror receiver that edges ship to",
		example: "ferry full --data-dir ./center --mirror-addr :9393 --mirror-token gw1=s3cret --kafka-addr :9092\n" +
			"  ferry edge --mirror-to center:9393 --mirror-edge-id gw1 --mirror-token s3cret",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			dataDir := fs.String("data-dir", "./data", "directory for the log and all node state")
			adminAddr := fs.String("admin-addr", ":8080", "admin HTTP listen address (/healthz, /readyz, /metrics)")
			kafkaAddr := fs.String("kafka-addr", ":9092", "Kafka protocol listen address; empty disables it")
			advertised := fs.String("kafka-advertised", "", "host:port Kafka clients are told to connect to (default: the listen address)")
			mirrorAddr := fs.String("mirror-addr", ":9393", "mirror receiver listen address (edges dial it)")
			tokens := fs.StringArray("mirror-token", nil, "EDGE=TOKEN: an edge allowed to ship here and its token; repeat for more")
			template := fs.String("mirror-topic-template", "{edge}.{topic}", "name of an edge's topic at the center")
			level := fs.String("log-level", "info", "log level: debug, info, warn, error")
			format := fs.String("log-format", "text", "log format: text or json")
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args); err != nil {
					return err
				}
				logger, err := newLogger(os.Stderr, *level, *format)
				if err != nil {
					return err
				}
				tok := map[string]string{}
				for _, t := range *tokens {
					e, v, ok := strings.Cut(t, "=")
					if !ok || e == "" || v == "" {
						return usagef("--mirror-token %q: want EDGE=TOKEN", t)
					}
					tok[e] = v
				}
				if len(tok) == 0 {
					logger.Warn("no --mirror-token given: no edge can ship here")
				}
				ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()
				n, err := edge.Start(edge.Options{
					Mode: "full", DataDir: *dataDir, AdminAddr: *adminAddr, Logger: logger,
					KafkaAddr: *kafkaAddr, KafkaAdvertised: *advertised, AutoCreateTopics: true, DefaultPartitions: 1,
					MirrorAddr: *mirrorAddr, MirrorReceiver: mirror.ReceiverOptions{Tokens: tok, TopicTemplate: *template},
				})
				if err != nil {
					return err
				}
				return n.Run(ctx)
			}
		},
	}
}
