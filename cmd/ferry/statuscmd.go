package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"ferry/edge/adminapi"
)

func statusCommand() *command {
	return &command{
		name:    "status",
		summary: "a running node at a glance: listeners, topics, disk against its budget, groups, devices, mirror",
		example: "ferry status --admin http://localhost:8080\n  ferry status --json",
		flags: nodeView("", "/api/status", func(out io.Writer, st adminapi.StatusView, c *adminClient, _ []byte) error {
			return printStatus(out, c.base, st)
		}),
	}
}

func printStatus(out io.Writer, admin string, st adminapi.StatusView) error {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	auth := "open"
	if st.AdminAuth {
		auth = "token"
	}
	fmt.Fprintf(out, "ferry %s %s at %s: %s, up %s, admin API %s\n", st.Mode, st.Version, admin, ready,
		(time.Duration(st.UptimeSeconds) * time.Second).String(), auth)
	orOff := func(s string) string {
		if s == "" {
			return "off"
		}
		return s
	}
	mqtt := "off"
	if len(st.Listeners.MQTT) > 0 {
		mqtt = strings.Join(st.Listeners.MQTT, " ")
	}
	fmt.Fprintf(out, "listeners:  kafka %s, mqtt %s, admin %s, mirror receiver %s\n", orOff(st.Listeners.Kafka), mqtt, st.Listeners.Admin, orOff(st.Listeners.Mirror))
	fmt.Fprintf(out, "log:        %d topic(s), %d partition(s), %d record(s)\n", st.Topics, st.Partitions, st.Records)
	disk := formatBytes(st.DiskBytes)
	if st.DiskBudgetBytes > 0 {
		disk += fmt.Sprintf(" of %s budget (%.0f%%)", formatBytes(st.DiskBudgetBytes), 100*float64(st.DiskBytes)/float64(st.DiskBudgetBytes))
	} else {
		disk += ", no budget"
	}
	if st.AppendsBlocked {
		disk += ": APPENDS BLOCKED (budget reached, everything left unshipped)"
	}
	fmt.Fprintf(out, "disk:       %s\n", disk)
	for _, d := range st.Damaged {
		fmt.Fprintf(out, "DAMAGED:    %s-%d at offset %d (%s, position %d): %s; consumers stop there, see `ferry log truncate`\n",
			d.Topic, d.Partition, d.Offset, d.Segment, d.Position, d.Reason)
	}
	fmt.Fprintf(out, "groups:     %d\n", st.Groups)
	if st.Auth != "" {
		fmt.Fprintf(out, "devices:    %d online, %d registered (auth %s)\n", st.DevicesOnline, st.DevicesRegistered, st.Auth)
	}
	if m := st.Mirror; m != nil {
		link := "down"
		if m.LinkUp {
			link = "up"
		}
		last := "never"
		if m.LastAck != nil {
			last = time.Since(*m.LastAck).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(out, "mirror:     %s -> %s: link %s, last acknowledgement %s, backlog %d record(s), %s\n",
			m.EdgeID, m.Center, link, last, m.BacklogRecords, formatBytes(m.BacklogBytes))
	}
	if f := st.Fleet; f != nil {
		fmt.Fprintf(out, "edges:      %d known, %d connected, copy lag %d record(s)\n", f.Edges, f.Connected, f.LagRecords)
		for _, e := range f.Members {
			fmt.Fprintf(out, "  %s\n", edgeLine(e, time.Now()))
		}
	}
	return nil
}

// edgeLine is one edge at a center, for ferry status.
func edgeLine(e adminapi.EdgeSummary, now time.Time) string {
	ago := func(t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" }
	conn := "connected"
	if !e.Connected {
		conn = "GONE since " + e.Since.Format(time.RFC3339) + " (" + ago(e.Since) + ")"
	}
	chunk := "never"
	if e.LastChunk != nil {
		chunk = ago(*e.LastChunk)
	}
	lag := "unknown (the edge does not report its end: protocol 3)"
	if e.LagKnown {
		lag = fmt.Sprintf("%d record(s)", e.LagRecords)
		if e.LagRecords > 0 {
			lag += fmt.Sprintf(", the oldest %s old", (time.Duration(e.LagSeconds) * time.Second).String())
		}
	}
	return fmt.Sprintf("%s: %s, last chunk %s, %.1f records/s, copy lag %s, gaps %d record(s), errors %d",
		e.Edge, conn, chunk, e.RecordsPerSecond, lag, e.GapRecords, e.Errors)
}

// formatBytes prints a size in binary units.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
