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

// nodeFlags are the flags every node command has.
type nodeFlags struct {
	dataDir, adminAddr, kafkaAddr, advertised, level, format *string
}

func addNodeFlags(fs *pflag.FlagSet) *nodeFlags {
	return &nodeFlags{
		dataDir:    fs.String("data-dir", "./data", "directory for the log and all node state"),
		adminAddr:  fs.String("admin-addr", ":8080", "admin HTTP listen address (/healthz, /readyz, /metrics)"),
		kafkaAddr:  fs.String("kafka-addr", ":9092", "Kafka protocol listen address; empty disables it"),
		advertised: fs.String("kafka-advertised", "", "host:port Kafka clients are told to connect to (default: the listen address)"),
		level:      fs.String("log-level", "info", "log level: debug, info, warn, error"),
		format:     fs.String("log-format", "text", "log format: text or json"),
	}
}

func (f *nodeFlags) logger() (*slog.Logger, error) { return newLogger(os.Stderr, *f.level, *f.format) }

// run starts a node with these flags filled into opts and runs it until
// SIGTERM or SIGINT.
func (f *nodeFlags) run(opts edge.Options) error {
	opts.DataDir, opts.AdminAddr, opts.KafkaAddr, opts.KafkaAdvertised = *f.dataDir, *f.adminAddr, *f.kafkaAddr, *f.advertised
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	n, err := edge.Start(opts)
	if err != nil {
		return err
	}
	return n.Run(ctx)
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
