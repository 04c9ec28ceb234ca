package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"ferry/edge/certs"
)

func certsCommand() *command {
	return &command{
		name:    "certs",
		summary: "make a CA and node, device and edge certificates for trying TLS out",
		example: "ferry certs init --dir ./certs\n  ferry certs node --dir ./certs --host localhost,127.0.0.1\n  ferry certs device dev1 --dir ./certs\n  ferry certs edge gw1 --dir ./certs\n" +
			"  ferry edge --kafka-tls-cert certs/node.pem --kafka-tls-key certs/node-key.pem",
		subs: []*command{
			{
				name: "init", summary: "make a CA: DIR/ca.pem (give it to clients) and DIR/ca-key.pem (keep it)",
				example: "ferry certs init --dir ./certs",
				flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
					dir := certsDirFlag(fs)
					cn := fs.String("cn", "ferry CA", "the CA's common name")
					days := fs.Int("days", int(certs.CAValidity/(24*time.Hour)), "validity in days")
					return func(args []string, out io.Writer) error {
						if err := exactArgs(args); err != nil {
							return err
						}
						if *days <= 0 {
							return usagef("--days must be positive")
						}
						ca, err := certs.NewCA(*cn, time.Duration(*days)*24*time.Hour)
						if err != nil {
							return err
						}
						if err := ca.Save(*dir); err != nil {
							return err
						}
						fmt.Fprintf(out, "CA %q valid until %s\n  %s\n  %s (private: keep it)\n", *cn, ca.Cert.NotAfter.Format(time.DateOnly),
							filepath.Join(*dir, certs.CACertFile), filepath.Join(*dir, certs.CAKeyFile))
						return nil
					}
				},
			},
			issueCommand("node", "", "a certificate for a node's listeners (Kafka, MQTT, admin, mirror) that also authenticates it to its cluster peers",
				"ferry certs node --dir ./certs --host localhost,127.0.0.1,gw1.example"),
			issueCommand("device", "NAME", "a client certificate for an MQTT device: common name NAME (`ferry devices add NAME --cert-cn NAME`)",
				"ferry certs device dev1 --dir ./certs\n  mosquitto_pub --cafile certs/ca.pem --cert certs/device-dev1.pem --key certs/device-dev1-key.pem -p 8883 -t t -m hi"),
			issueCommand("edge", "EDGE_ID", "a client certificate for an edge's mirror: common name EDGE_ID (ferry edge --mirror-tls-cert)",
				"ferry certs edge gw1 --dir ./certs"),
		},
	}
}

func certsDirFlag(fs *pflag.FlagSet) *string {
	return fs.String("dir", "./certs", "directory of the CA (ca.pem, ca-key.pem) and the certificates")
}

// issueCommand is `ferry certs node|device|edge`: a key and a certificate
// signed by the CA in --dir, written there as KIND[-NAME].pem and
// KIND[-NAME]-key.pem.
func issueCommand(kind, arg, summary, example string) *command {
	return &command{
		name: kind, args: arg, summary: summary, example: example,
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			dir := certsDirFlag(fs)
			days := fs.Int("days", int(certs.DefaultValidity/(24*time.Hour)), "validity in days")
			var hosts, name *string
			if kind == "node" {
				hosts = fs.String("host", "localhost,127.0.0.1", "the DNS names and IP addresses clients reach the node by, comma-separated")
				name = fs.String("name", "node", "file name: NAME.pem and NAME-key.pem")
			}
			return func(args []string, out io.Writer) error {
				if *days <= 0 {
					return usagef("--days must be positive")
				}
				req := certs.Request{NotAfter: time.Now().Add(time.Duration(*days) * 24 * time.Hour)}
				file := ""
				if kind == "node" {
					if err := exactArgs(args); err != nil {
						return err
					}
					for _, h := range strings.Split(*hosts, ",") {
						if h = strings.TrimSpace(h); h != "" {
							req.Hosts = append(req.Hosts, h)
						}
					}
					if len(req.Hosts) == 0 {
						return usagef("--host: at least one name or address")
					}
					req.CommonName, req.Kind, file = req.Hosts[0], certs.PeerCert, *name
				} else {
					if err := exactArgs(args, arg); err != nil {
						return err
					}
					if args[0] == "" || strings.ContainsAny(args[0], `/\`) {
						return usagef("%s %q: not a usable name", arg, args[0])
					}
					req.CommonName, req.Kind, file = args[0], certs.ClientCert, kind+"-"+args[0]
				}
				ca, err := certs.LoadCA(*dir)
				if err != nil {
					return fmt.Errorf("no CA in %s (ferry certs init --dir %s): %w", *dir, *dir, err)
				}
				if req.NotAfter.After(ca.Cert.NotAfter) {
					req.NotAfter = ca.Cert.NotAfter
				}
				certPEM, keyPEM, err := ca.Issue(req)
				if err != nil {
					return err
				}
				if err := certs.WritePair(*dir, file, certPEM, keyPEM); err != nil {
					return err
				}
				what := "common name " + req.CommonName
				if kind == "node" {
					what = "for " + strings.Join(req.Hosts, ", ")
				}
				fmt.Fprintf(out, "%s certificate %s, valid until %s\n  %s\n  %s (private)\n", kind, what, req.NotAfter.Format(time.DateOnly),
					filepath.Join(*dir, file+".pem"), filepath.Join(*dir, file+"-key.pem"))
				return nil
			}
		},
	}
}
