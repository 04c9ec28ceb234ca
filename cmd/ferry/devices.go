package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"ferry/devices"
)

// devicesStdin is where --password-stdin reads from, and devicesBcryptCost
// the cost of the hashes the commands make (0: the registry's default);
// tests replace them.
var (
	devicesStdin      io.Reader = os.Stdin
	devicesBcryptCost int
)

func devicesCommand() *command {
	return &command{
		name:    "devices",
		summary: "add, list, show, enable, disable and delete devices and their passwords (broker stopped)",
		example: "printf '%s\\n' \"$PW\" | ferry devices add dev1 --password-stdin --publish 'factory/+/{device}/#' --data-dir ./data",
		subs: []*command{
			{
				name: "add", args: "ID", summary: "register a device with its credentials, ACL and rate limit",
				example: "printf '%s\\n' \"$PW\" | ferry devices add dev1 --password-stdin \\\n" +
					"    --publish 'factory/+/{device}/#' --subscribe 'cmd/{device}/#' --rate 10 --burst 20 --data-dir ./data\n" +
					"ferry devices add cam7 --cert-cn cam7.factory.example --publish 'video/{device}' --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					pw := passwordFlags(fs)
					pub := fs.StringArray("publish", nil, "MQTT topic filter the device may publish to (repeatable); {device} stands for its id")
					sub := fs.StringArray("subscribe", nil, "MQTT topic filter the device may subscribe to (repeatable); {device} stands for its id")
					rate := fs.Float64("rate", 0, "publish rate limit in messages per second (0: unlimited)")
					burst := fs.Int("burst", 0, "messages admitted at once under --rate (0: the rate, rounded up)")
					cn := fs.String("cert-cn", "", "common name of the device's client certificate (mTLS identity)")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "ID"); err != nil {
							return err
						}
						password, err := pw.read(*cn == "")
						if err != nil {
							return err
						}
						d := devices.Device{ID: args[0], Enabled: true, CertCN: *cn, RateLimit: *rate, Burst: *burst,
							ACL: devices.ACL{Publish: *pub, Subscribe: *sub}}
						return withRegistry(*dataDir, func(r *devices.Registry) error {
							if err := r.Add(d, password); err != nil {
								return err
							}
							_, err := fmt.Fprintf(out, "added device %s\n", d.ID)
							return err
						})
					}
				},
			},
			{
				name: "list", summary: "list devices with their presence",
				example: "ferry devices list --data-dir ./data --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						return withRegistry(*dataDir, func(r *devices.Registry) error {
							views, err := listDevices(r)
							if err != nil {
								return err
							}
							if *asJSON {
								return json.NewEncoder(out).Encode(views)
							}
							tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
							fmt.Fprintln(tw, "ID\tENABLED\tONLINE\tLAST SEEN\tMESSAGES IN")
							for _, v := range views {
								fmt.Fprintf(tw, "%s\t%t\t%t\t%s\t%d\n", v.ID, v.Enabled, v.Presence.Online, formatTime(v.Presence.LastSeen), v.Presence.MessagesIn)
							}
							return tw.Flush()
						})
					}
				},
			},
			{
				name: "show", args: "ID", summary: "show a device's settings and presence",
				example: "ferry devices show dev1 --data-dir ./data --json",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					asJSON := fs.Bool("json", false, "print JSON")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "ID"); err != nil {
							return err
						}
						return withRegistry(*dataDir, func(r *devices.Registry) error {
							d, err := r.Get(args[0])
							if err != nil {
								return err
							}
							p, err := r.Presence(args[0])
							if err != nil {
								return err
							}
							v := newDeviceView(d, p)
							if *asJSON {
								return json.NewEncoder(out).Encode(v)
							}
							return printDevice(out, v)
						})
					}
				},
			},
			deviceChangeCommand("enable", "enable a device", "enabled", func(r *devices.Registry, id string) error { return r.SetEnabled(id, true) }),
			deviceChangeCommand("disable", "disable a device: it can no longer connect, publish or subscribe", "disabled",
				func(r *devices.Registry, id string) error { return r.SetEnabled(id, false) }),
			deviceChangeCommand("delete", "delete a device, its credentials and its presence", "deleted", (*devices.Registry).Delete),
			{
				name: "passwd", args: "ID", summary: "set a device's password",
				example: "printf '%s\\n' \"$NEW_PW\" | ferry devices passwd dev1 --password-stdin --data-dir ./data",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dataDir := dataDirFlag(fs)
					pw := passwordFlags(fs)
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args, "ID"); err != nil {
							return err
						}
						password, err := pw.read(true)
						if err != nil {
							return err
						}
						return withRegistry(*dataDir, func(r *devices.Registry) error {
							if err := r.SetPassword(args[0], password); err != nil {
								return err
							}
							_, err := fmt.Fprintf(out, "password of device %s changed\n", args[0])
							return err
						})
					}
				},
			},
		},
	}
}

// deviceChangeCommand is a command that takes a device id and changes it.
func deviceChangeCommand(name, summary, done string, change func(*devices.Registry, string) error) *command {
	return &command{
		name: name, args: "ID", summary: summary,
		example: fmt.Sprintf("ferry devices %s dev1 --data-dir ./data", name),
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			dataDir := dataDirFlag(fs)
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args, "ID"); err != nil {
					return err
				}
				return withRegistry(*dataDir, func(r *devices.Registry) error {
					if err := change(r, args[0]); err != nil {
						return err
					}
					_, err := fmt.Fprintf(out, "%s device %s\n", done, args[0])
					return err
				})
			}
		},
	}
}

type passwordOptions struct {
	value     *string
	fromStdin *bool
}

func passwordFlags(fs *pflag.FlagSet) passwordOptions {
	return passwordOptions{
		value:     fs.String("password", "", "the device's password (visible to other users in the process list: prefer --password-stdin)"),
		fromStdin: fs.Bool("password-stdin", false, "read the password from the first line of standard input"),
	}
}

// read returns the password the flags give, "" if none and !required.
func (o passwordOptions) read(required bool) (string, error) {
	switch {
	case *o.value != "" && *o.fromStdin:
		return "", usagef("--password and --password-stdin exclude each other")
	case *o.value != "":
		return *o.value, nil
	case *o.fromStdin:
		line, err := bufio.NewReader(io.LimitReader(devicesStdin, 4096)).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading the password from stdin: %w", err)
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return "", usagef("--password-stdin: standard input has no password")
		}
		return line, nil
	case required:
		return "", usagef("give --password-stdin or --password (or --cert-cn for a certificate-only device)")
	}
	return "", nil
}

// withRegistry opens a data directory's device registry for an offline
// command.
func withRegistry(dataDir string, fn func(*devices.Registry) error) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	r, err := devices.Open(filepath.Join(dataDir, devices.FileName), devices.Options{
		LockTimeout: 300 * time.Millisecond, PresenceFlushInterval: -1, BcryptCost: devicesBcryptCost,
		Logger: slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, devices.ErrLocked) {
		return fmt.Errorf("%s is in use by a running ferry: stop it first (online management arrives with the admin API)", dataDir)
	}
	if err != nil {
		return err
	}
	err = fn(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// deviceView is a device as the commands print it: never its password hash.
type deviceView struct {
	devices.Device
	HasPassword bool             `json:"has_password"`
	Presence    devices.Presence `json:"presence"`
}

func newDeviceView(d devices.Device, p devices.Presence) deviceView {
	v := deviceView{Device: d, HasPassword: len(d.PasswordHash) > 0, Presence: p}
	v.PasswordHash = nil
	return v
}

func listDevices(r *devices.Registry) ([]deviceView, error) {
	ds, err := r.List()
	if err != nil {
		return nil, err
	}
	pres, err := r.PresenceAll()
	if err != nil {
		return nil, err
	}
	views := make([]deviceView, 0, len(ds))
	for _, d := range ds {
		views = append(views, newDeviceView(d, pres[d.ID]))
	}
	return views, nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func printDevice(out io.Writer, v deviceView) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	orNone := func(s []string) string {
		if len(s) == 0 {
			return "(none)"
		}
		return strings.Join(s, " ")
	}
	rate := "unlimited"
	if v.RateLimit > 0 {
		rate = fmt.Sprintf("%g msg/s, burst %d", v.RateLimit, v.Burst)
	}
	cn := v.CertCN
	if cn == "" {
		cn = "(none)"
	}
	p := v.Presence
	rows := [][2]string{
		{"Device", v.ID},
		{"enabled", fmt.Sprint(v.Enabled)},
		{"password", map[bool]string{true: "set", false: "(none)"}[v.HasPassword]},
		{"certificate CN", cn},
		{"publish", orNone(v.ACL.Publish)},
		{"subscribe", orNone(v.ACL.Subscribe)},
		{"rate limit", rate},
		{"created", formatTime(v.CreatedAt)},
		{"online", fmt.Sprint(p.Online)},
		{"last seen", formatTime(p.LastSeen)},
		{"remote address", p.RemoteAddr},
		{"messages in", fmt.Sprint(p.MessagesIn)},
		{"bytes in", fmt.Sprint(p.BytesIn)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}
