package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// ddRate runs dd's sequential write with fdatasync at the end (1 MiB
// blocks) in dir and returns dd's own MB/s and the command run.
func ddRate(dir string, mib int) (float64, string, error) {
	path := filepath.Join(dir, "dd.raw")
	defer os.Remove(path)
	args := []string{"if=/dev/zero", "of=" + path, "bs=1M", fmt.Sprintf("count=%d", mib), "conv=fdatasync"}
	cmdline := "dd " + joinArgs(args)
	out, err := exec.Command("dd", args...).CombinedOutput()
	if err != nil {
		return 0, cmdline, fmt.Errorf("%s: %v\n%s", cmdline, err, out)
	}
	return parseDD(string(out)), cmdline, nil
}

var ddSpeed = regexp.MustCompile(`([0-9.,]+) ([kMG]?B)/s`)

// parseDD reads the rate of dd's last line ("... s, 334 MB/s") in MB/s.
func parseDD(out string) float64 {
	m := ddSpeed.FindAllStringSubmatch(out, -1)
	if m == nil {
		return 0
	}
	last := m[len(m)-1]
	v, err := strconv.ParseFloat(regexp.MustCompile(`,`).ReplaceAllString(last[1], "."), 64)
	if err != nil {
		return 0
	}
	switch last[2] {
	case "kB":
		v /= 1e3
	case "GB":
		v *= 1e3
	case "B":
		v /= 1e6
	}
	return v
}

// loopbackTCP measures one TCP stream's bandwidth over 127.0.0.1 for d:
// a writer sending 1 MiB writes, a reader discarding them, in MB/s.
func loopbackTCP(d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- 0
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for time.Since(start) < d {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	n := <-got
	return float64(n) / time.Since(start).Seconds() / 1e6, nil
}
