package main

import (
	"bufio"
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
	"ferry/edge"
	"ferry/edge/adminapi"
)

// The device commands work on a running node's registry through its admin
// API, or, with --data-dir, on a stopped node's registry file; both print
// the same tables and JSON (adminapi.DeviceView).

// stdin is where --password-stdin and `ferry produce` read from, and
// devicesBcryptCost the cost of the hashes the offline commands make (0:
// the registry's default); tests replace them.
var (
	stdin             io.Reader = os.Stdin
	devicesBcryptCost int
)

func devicesCommand() *command {
	return &command{
		name:    "devices",
		summary: "add, list, show, enable, disable and delete devices, on a running node (--admin) or a stopped one's data (--data-dir)",
		example: "printf '%s\\n' \"$PW\" | ferry devices add dev1 --password-stdin --publish 'factory/+/{device}/#' --admin http://localhost:8080",
		subs: []*command{
			{
				name: "add", args: "ID", summary: "register a device with its credentials, ACL and rate limit",
				example: "printf '%s\\n' \"$PW\" | ferry devices add dev1 --password-stdin \\\n" +
					"    --publish 'factory/+/{device}/#' --subscribe 'cmd/{device}/#' --rate 10 --burst 20 --admin http://localhost:8080\n" +
					"ferry devices add cam7 --cert-cn cam7.factory.example --publish 'video/{device}' --data-dir ./data   # the node stopped",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					pw := passwordFlags(fs)
					pub := fs.StringArray("publish", nil, "MQTT topic filter the device may publish to (repeatable); {device} stands for its id")
					sub := fs.StringArray("subscribe", nil, "MQTT topic filter the device may subscribe to (repeatable); {device} stands for its id")
					rate := fs.Float64("rate", 0, "publish rate limit in messages per second (0: unlimited)")
					burst := fs.Int("burst", 0, "messages admitted at once under --rate (0: the rate, rounded up)")
					cn := fs.String("cert-cn", "", "common name of the device's client certificate (mTLS identity)")
					return changeAction("ID", "added device %s", func(id string) error {
						password, err := pw.read(*cn == "")
						if err != nil {
							return err
						}
						d := devices.Device{ID: id, Enabled: true, CertCN: *cn, RateLimit: *rate, Burst: *burst,
							ACL: devices.ACL{Publish: *pub, Subscribe: *sub}}
						return where.registry(func(r *devices.Registry) error { return r.Add(d, password) },
							send("POST", "/api/devices", adminapi.AddDeviceRequest{ID: d.ID, Password: password, CertCN: d.CertCN,
								ACL: d.ACL, RateLimit: d.RateLimit, Burst: d.Burst}))
					})
				},
			},
			{
				name: "list", summary: "list devices with their presence",
				example: "ferry devices list --admin http://localhost:8080\n  ferry devices list --data-dir ./data --json",
				flags: dataView(localOrAdmin.registry, "", "/api/devices",
					func(r *devices.Registry, _ string) ([]adminapi.DeviceView, error) { return adminapi.DeviceViews(r) }, printDevices),
			},
			{
				name: "show", args: "ID", summary: "show a device's settings and presence",
				example: "ferry devices show dev1 --admin http://localhost:8080 --json",
				flags:   dataView(localOrAdmin.registry, "ID", "/api/devices", adminapi.DescribeDevice, printDevice),
			},
			deviceChangeCommand("enable", "enable a device", "enabled", func(r *devices.Registry, id string) error { return r.SetEnabled(id, true) },
				func(c *adminClient, id string) error {
					return patchDevice(c, id, adminapi.ChangeDeviceRequest{Enabled: ptr(true)})
				}),
			deviceChangeCommand("disable", "disable a device: it can no longer connect, publish or subscribe", "disabled",
				func(r *devices.Registry, id string) error { return r.SetEnabled(id, false) },
				func(c *adminClient, id string) error {
					return patchDevice(c, id, adminapi.ChangeDeviceRequest{Enabled: ptr(false)})
				}),
			deviceChangeCommand("delete", "delete a device, its credentials and its presence", "deleted", (*devices.Registry).Delete,
				func(c *adminClient, id string) error {
					_, err := c.do("DELETE", "/api/devices/"+pathEscape(id), nil)
					return err
				}),
			{
				name: "passwd", args: "ID", summary: "set a device's password",
				example: "printf '%s\\n' \"$NEW_PW\" | ferry devices passwd dev1 --password-stdin --admin http://localhost:8080",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					where := localOrAdminFlags(fs)
					pw := passwordFlags(fs)
					return changeAction("ID", "password of device %s changed", pw.with(func(id, password string) error {
						return where.registry(func(r *devices.Registry) error { return r.SetPassword(id, password) },
							send("PATCH", "/api/devices/"+pathEscape(id), adminapi.ChangeDeviceRequest{Password: &password}))
					}))
				},
			},
		},
	}
}

// deviceChangeCommand is a command that takes a device id and changes it,
// in a data directory's registry (local) or a running node's (remote).
func deviceChangeCommand(name, summary, done string, local func(*devices.Registry, string) error, remote func(*adminClient, string) error) *command {
	return &command{
		name: name, args: "ID", summary: summary,
		example: fmt.Sprintf("ferry devices %s dev1 --admin http://localhost:8080", name),
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			where := localOrAdminFlags(fs)
			return changeAction("ID", done+" device %s", func(id string) error {
				return where.registry(func(r *devices.Registry) error { return local(r, id) },
					func(c *adminClient) error { return remote(c, id) })
			})
		},
	}
}

func patchDevice(c *adminClient, id string, req adminapi.ChangeDeviceRequest) error {
	_, err := c.call("PATCH", "/api/devices/"+pathEscape(id), req, nil)
	return err
}

func ptr[T any](v T) *T { return &v }

// registry calls local with the data directory's device registry
// (--data-dir), or remote with the admin API's client.
func (t localOrAdmin) registry(local func(*devices.Registry) error, remote func(*adminClient) error) error {
	return t.choose(func(dir string) error { return withRegistry(dir, local) }, remote)
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
		line, err := bufio.NewReader(io.LimitReader(stdin, 4096)).ReadString('\n')
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

// with is a change that needs the password the flags give: change gets
// the name and the password, read once the name was checked.
func (o passwordOptions) with(change func(name, password string) error) func(name string) error {
	return func(name string) error {
		password, err := o.read(true)
		if err != nil {
			return err
		}
		return change(name, password)
	}
}

// withRegistry opens a data directory's device registry for an offline
// command.
func withRegistry(dataDir string, fn func(*devices.Registry) error) error {
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	if err := edge.CheckDataFormat(dataDir, false); err != nil {
		return err
	}
	r, err := devices.Open(filepath.Join(dataDir, devices.FileName), devices.Options{
		LockTimeout: 300 * time.Millisecond, PresenceFlushInterval: -1, BcryptCost: devicesBcryptCost,
		Logger: slog.New(slog.DiscardHandler),
	})
	if errors.Is(err, devices.ErrLocked) {
		return fmt.Errorf("%s is in use by a running ferry: stop it first, or manage the running node through its admin API (--admin URL instead of --data-dir)", dataDir)
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

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

func formatTimePtr(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return formatTime(*t)
}

func printDevices(out io.Writer, views []adminapi.DeviceView) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tENABLED\tONLINE\tLAST SEEN\tMESSAGES IN")
	for _, v := range views {
		fmt.Fprintf(tw, "%s\t%t\t%t\t%s\t%d\n", v.ID, v.Enabled, v.Online, formatTimePtr(v.LastSeen), v.MessagesIn)
	}
	return tw.Flush()
}

func printDevice(out io.Writer, v adminapi.DeviceView) error {
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
	rows := [][2]string{
		{"Device", v.ID},
		{"enabled", fmt.Sprint(v.Enabled)},
		{"password", map[bool]string{true: "set", false: "(none)"}[v.HasPassword]},
		{"certificate CN", cn},
		{"publish", orNone(v.ACL.Publish)},
		{"subscribe", orNone(v.ACL.Subscribe)},
		{"rate limit", rate},
		{"created", formatTime(v.CreatedAt)},
		{"online", fmt.Sprint(v.Online)},
		{"last seen", formatTimePtr(v.LastSeen)},
		{"remote address", v.RemoteAddr},
		{"messages in", fmt.Sprint(v.MessagesIn)},
		{"bytes in", fmt.Sprint(v.BytesIn)},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}
