package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"ferry/edge/adminapi"
	"ferry/mirror"
)

func mirrorCommand() *command {
	return &command{
		name:    "mirror",
		summary: "the mirror of a running node: an edge's link and backlog, or a center's copies of its edges",
		subs: []*command{{
			name:    "status",
			summary: "an edge: the link to the center and what each partition still has to ship; a center: how far each edge's copies are contiguous",
			example: "ferry mirror status --admin http://localhost:8080\n  ferry mirror status --admin http://localhost:8080 --json",
			flags: nodeView("", "/api/mirror", func(out io.Writer, center mirror.ReceiverStatus, _ *adminClient, body []byte) error {
				if center.Edges != nil { // a full node's answer
					return printCenterStatus(out, center)
				}
				var st mirror.Status
				if err := json.Unmarshal(body, &st); err != nil {
					return err
				}
				return printMirrorStatus(out, st)
			}),
		}},
	}
}

func printMirrorStatus(out io.Writer, st mirror.Status) error {
	link := "down"
	if st.LinkUp {
		link = "up"
	}
	last := "never"
	if st.LastAck != nil {
		last = st.LastAck.Format(time.RFC3339) + fmt.Sprintf(" (%s ago)", time.Since(*st.LastAck).Round(time.Second))
	}
	ratio := "-"
	if st.WireBytes > 0 {
		ratio = fmt.Sprintf("%.1fx", st.RawBytes/st.WireBytes)
	}
	fmt.Fprintf(out, "edge %s -> %s: link %s, last acknowledgement %s, compression %s\n", st.EdgeID, st.Center, link, last, ratio)
	if e := st.LastError; e != nil {
		retry := ""
		if !st.LinkUp {
			retry = fmt.Sprintf(", next attempt %s", e.RetryAt.Format(time.RFC3339))
		}
		fmt.Fprintf(out, "failures %d, the last %s ago (%s): %s%s\n", st.Failures, time.Since(e.At).Round(time.Second), e.Reason, e.Message, retry)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tEND\tACKED\tBACKLOG\tBACKLOG BYTES\tOLDEST UNSHIPPED\tLIVE TAIL")
	for _, p := range st.Partitions {
		age := "-"
		if p.BacklogRecords > 0 {
			age = (time.Duration(p.OldestUnshippedAge) * time.Second).String()
		}
		tail := "-"
		if p.LiveTailFrom > 0 {
			tail = fmt.Sprintf("from %d, center has to %d", p.LiveTailFrom, p.LiveTailAcked)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", p.Topic, p.Partition, p.EndOffset, p.Acked, p.BacklogRecords, p.BacklogBytes, age, tail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if st.DroppedUnreported > 0 {
		fmt.Fprintf(out, "%d records dropped under the disk budget (drop-oldest) before the center had them; it is told the gap when the link is up:\n", st.DroppedUnreported)
		for _, p := range st.Partitions {
			if p.GapFrom != nil {
				fmt.Fprintf(out, "  %s-%d: %d records from offset %d to %d\n", p.Topic, p.Partition, p.GapRecords, *p.GapFrom, *p.GapFrom+p.GapRecords-1)
			}
		}
	}
	for _, p := range st.Partitions {
		if p.BlockedAt != nil {
			fmt.Fprintf(out, "%s-%d stopped shipping at offset %d: %s (run ferry log verify)\n", p.Topic, p.Partition, *p.BlockedAt, p.Error)
		}
	}
	return nil
}

// printCenterStatus prints a center's edges, then their copies.
func printCenterStatus(out io.Writer, st mirror.ReceiverStatus) error {
	if len(st.Edges) == 0 {
		fmt.Fprintln(out, "no edge has connected since the center started")
		return nil
	}
	now := time.Now()
	for _, e := range st.Edges {
		fmt.Fprintln(out, edgeLine(adminapi.EdgeSummary{Edge: e.Edge, Connected: e.Connected, Since: e.Since, LastChunk: e.LastChunk,
			RecordsPerSecond: e.RecordsPerSecond, LagKnown: e.LagKnown, LagRecords: e.LagRecords, LagSeconds: e.LagSeconds,
			GapRecords: e.GapRecords, Errors: e.Errors}, now))
		if le := e.LastError; le != nil {
			fmt.Fprintf(out, "  last error %s ago (%s): %s\n", now.Sub(le.At).Round(time.Second), le.Reason, le.Message)
		}
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EDGE\tCOPY\tPARTITION\tSTART\tCONTIGUOUS TO\tDURABLE TO\tEDGE END\tLAG\tSTAGED LIVE TAIL")
	for _, e := range st.Edges {
		for _, p := range e.Partitions {
			staged := "-"
			if p.StagedTopic != "" {
				staged = fmt.Sprintf("%s [%d, %d)", p.StagedTopic, p.StagedFrom, p.StagedEnd)
			}
			end, lag := "-", "-"
			if p.EdgeEnd != nil {
				end, lag = fmt.Sprint(*p.EdgeEnd), fmt.Sprint(*p.LagRecords)
				if *p.LagRecords > 0 {
					lag += fmt.Sprintf(" (%s)", time.Duration(*p.LagSeconds)*time.Second)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", e.Edge, p.CopyTopic, p.Partition, p.StartOffset, p.ContiguousEnd, p.DurableEnd, end, lag, staged)
		}
	}
	return tw.Flush()
}
