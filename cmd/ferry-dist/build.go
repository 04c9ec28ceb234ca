package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// target is one Linux platform ferry is released for.
type target struct {
	name    string // as in file names: amd64, arm64, armv7, armv6, riscv64, mipsle
	goarch  string
	env     []string // GOARM, GOMIPS
	deb     string   // Debian architecture
	rpm     string   // RPM architecture
	variant string   // OCI platform variant
}

// allTargets are the release targets. armv6 is the Raspberry Pi Zero and 1:
// Raspberry Pi OS calls its ARMv6 userland armhf, so the armv6 package is an
// armhf package too (a static binary needs nothing of the userland); mipsle
// is soft-float, as routers without an FPU need.
var allTargets = []target{
	{name: "amd64", goarch: "amd64", deb: "amd64", rpm: "x86_64"},
	{name: "arm64", goarch: "arm64", deb: "arm64", rpm: "aarch64", variant: "v8"},
	{name: "armv7", goarch: "arm", env: []string{"GOARM=7"}, deb: "armhf", rpm: "armv7hl", variant: "v7"},
	{name: "armv6", goarch: "arm", env: []string{"GOARM=6"}, deb: "armhf", rpm: "armv6hl", variant: "v6"},
	{name: "riscv64", goarch: "riscv64", deb: "riscv64", rpm: "riscv64"},
	{name: "mipsle", goarch: "mipsle", env: []string{"GOMIPS=softfloat"}, deb: "mipsel", rpm: "mipsel"},
}

func targetNames(ts []target) []string {
	var names []string
	for _, t := range ts {
		names = append(names, t.name)
	}
	return names
}

func parseTargets(s string) ([]target, error) {
	var ts []target
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		found := false
		for _, t := range allTargets {
			if t.name == name {
				ts, found = append(ts, t), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown target %q (have %s)", name, strings.Join(targetNames(allTargets), ", "))
		}
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("no targets")
	}
	return ts, nil
}

// buildBinary builds a static ferry for t into out/ferry-linux-NAME, with
// the same flags as `make build`.
func buildBinary(ctx context.Context, root, out, version string, t target) (string, error) {
	bin, err := filepath.Abs(filepath.Join(out, "ferry-linux-"+t.name))
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version="+version, "-o", bin, "./cmd/ferry")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.goarch)
	cmd.Env = append(cmd.Env, t.env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build for %s: %w", t.name, err)
	}
	return bin, nil
}

// writeChecksums writes out/SHA256SUMS in sha256sum's format (checked with
// `sha256sum -c SHA256SUMS` in out).
func writeChecksums(out string, files []string) (string, error) {
	var b strings.Builder
	for _, f := range files {
		sum, err := sha256File(f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s  %s\n", sum, filepath.Base(f))
	}
	path := filepath.Join(out, "SHA256SUMS")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
