package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"ferry/edge"
)

func edgeCommand() *command {
	return &command{
		name:    "edge",
		summary: "run an edge broker node until SIGTERM or SIGINT",
		example: "ferry edge --data-dir ./data --admin-addr :8080 --kafka-addr :9092\n  curl http://localhost:8080/readyz\n  kcat -b localhost:9092 -L",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			dataDir := fs.String("data-dir", "./data", "directory for the log and all node state")
			adminAddr := fs.String("admin-addr", ":8080", "admin HTTP listen address (/healthz, /readyz, /metrics)")
			kafkaAddr := fs.String("kafka-addr", ":9092", "Kafka protocol listen address; empty disables it")
			advertised := fs.String("kafka-advertised", "", "host:port Kafka clients are told to connect to (default: the listen address)")
			autoCreate := fs.Bool("auto-create-topics", true, "let Kafka clients create topics by producing to or asking for them")
			defaultParts := fs.Int32("default-partitions", 1, "partitions of auto-created topics")
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
				ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
				defer stop()
				n, err := edge.Start(edge.Options{
					DataDir: *dataDir, AdminAddr: *adminAddr, Logger: logger,
					KafkaAddr: *kafkaAddr, KafkaAdvertised: *advertised, AutoCreateTopics: *autoCreate, DefaultPartitions: *defaultParts,
				})
				if err != nil {
					return err
				}
				return n.Run(ctx)
			}
		},
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}
