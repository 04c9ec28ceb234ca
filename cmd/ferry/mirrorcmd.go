package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"ferry/mirror"
)

func mirrorCommand() *command {
	return &command{
		name:    "mirror",
		summary: "the mirror of a running edge: link, backlog per partition",
		subs: []*command{{
			name:    "status",
			summary: "show the link to the center and what each partition still has to ship",
			example: "ferry mirror status --admin http://localhost:8080\n  ferry mirror status --admin http://localhost:8080 --json",
			flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
				admin := adminFlags(fs)
				asJSON := fs.Bool("json", false, "print JSON")
				return func(args []string, out io.Writer) error {
					if err := exactArgs(args); err != nil {
						return err
					}
					c, err := admin.client()
					if err != nil {
						return err
					}
					var st mirror.Status
					body, err := c.get("/api/mirror", &st)
					if err != nil {
						return err
					}
					if *asJSON {
						return writeRaw(out, body)
					}
					return printMirrorStatus(out, st)
				}
			},
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
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tEND\tACKED\tBACKLOG\tBACKLOG BYTES\tOLDEST UNSHIPPED")
	for _, p := range st.Partitions {
		age := "-"
		if p.BacklogRecords > 0 {
			age = (time.Duration(p.OldestUnshippedAge) * time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%s\n", p.Topic, p.Partition, p.EndOffset, p.Acked, p.BacklogRecords, p.BacklogBytes, age)
	}
	return tw.Flush()
}
