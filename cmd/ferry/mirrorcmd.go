package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
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
				admin := fs.String("admin", "http://localhost:8080", "the node's admin address")
				asJSON := fs.Bool("json", false, "print JSON")
				return func(args []string, out io.Writer) error {
					if err := exactArgs(args); err != nil {
						return err
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimSuffix(*admin, "/")+"/api/mirror", nil)
					if err != nil {
						return usagef("--admin %q: %v", *admin, err)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						return fmt.Errorf("asking %s: %w", *admin, err)
					}
					defer resp.Body.Close()
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						return err
					}
					if resp.StatusCode != http.StatusOK {
						var e struct{ Error string }
						json.Unmarshal(body, &e)
						return fmt.Errorf("%s: %s %s", *admin, resp.Status, e.Error)
					}
					if *asJSON {
						_, err := out.Write(body)
						return err
					}
					var st mirror.Status
					if err := json.Unmarshal(body, &st); err != nil {
						return fmt.Errorf("%s: %w", *admin, err)
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
