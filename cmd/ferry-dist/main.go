// Command ferry-dist builds ferry's release artifacts: static binaries for
// each Linux target with their SHA-256 checksums, .deb and .rpm packages
// (nfpm, as a library) holding the binary, a hardened systemd unit, the
// conffile /etc/ferry/ferry.yaml and sysusers.d/tmpfiles.d entries, and an
// OCI image layout tarball (go-containerregistry; no Docker daemon) of the
// static binary, CA certificates and a non-root user.
//
//	make dist                      # every target, into dist/
//	go -C cmd/ferry-dist run . -root ../.. -out ../../dist -targets amd64
//
// It is its own Go module so that the ferry binary, `go vet ./...` and
// `go test ./...` of the main module neither link nor download nfpm and
// go-containerregistry: they are build-time tools. It builds ferry by
// running the go command on the main module (-root), never by importing it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
)

func main() {
	root := flag.String("root", ".", "the ferry source tree (the main module's directory)")
	out := flag.String("out", "dist", "directory the artifacts are written to")
	version := flag.String("version", "dev", "ferry's version (git describe); packages get a Debian/RPM-safe form of it")
	targets := flag.String("targets", strings.Join(targetNames(allTargets), ","), "comma-separated targets: "+strings.Join(targetNames(allTargets), ", "))
	formats := flag.String("formats", "bin,deb,rpm,oci", "comma-separated artifacts: bin (always built), deb, rpm, oci")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ts, err := parseTargets(*targets)
	if err == nil {
		err = dist(ctx, config{root: *root, out: *out, version: *version, targets: ts, formats: parseFormats(*formats)})
	}
	if err != nil {
		slog.Error("ferry-dist failed", "err", err)
		os.Exit(1)
	}
}

type config struct {
	root, out, version string
	targets            []target
	formats            map[string]bool
}

func parseFormats(s string) map[string]bool {
	m := map[string]bool{"bin": true}
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			m[f] = true
		}
	}
	return m
}

// dist builds every artifact cfg asks for and writes SHA256SUMS over them.
func dist(ctx context.Context, cfg config) error {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	var artifacts []string
	bins := map[string]string{}
	for _, t := range cfg.targets {
		bin, err := buildBinary(ctx, cfg.root, cfg.out, cfg.version, t)
		if err != nil {
			return err
		}
		slog.Info("built", "target", t.name, "file", bin)
		bins[t.name] = bin
		artifacts = append(artifacts, bin)
	}
	for _, t := range cfg.targets {
		for _, format := range []string{"deb", "rpm"} {
			if !cfg.formats[format] {
				continue
			}
			pkg, err := writePackage(format, bins[t.name], cfg.out, cfg.version, t)
			if err != nil {
				return fmt.Errorf("%s for %s: %w", format, t.name, err)
			}
			slog.Info("packaged", "format", format, "target", t.name, "file", pkg)
			artifacts = append(artifacts, pkg)
		}
	}
	if cfg.formats["oci"] {
		img, err := writeImage(cfg.out, cfg.version, cfg.targets, bins)
		if err != nil {
			return fmt.Errorf("oci image: %w", err)
		}
		slog.Info("image", "file", img)
		artifacts = append(artifacts, img)
	}
	sums, err := writeChecksums(cfg.out, artifacts)
	if err != nil {
		return err
	}
	slog.Info("checksums", "file", sums)
	return nil
}
