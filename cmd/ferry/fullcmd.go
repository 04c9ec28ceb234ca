package main

import (
	"crypto/tls"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"ferry/edge"
	"ferry/mirror"
)

func fullCommand() *command {
	return &command{
		name:    "full",
		summary: "run a central (full) node: the Kafka listener and the mirror receiver that edges ship to",
		example: "ferry full --data-dir ./center --mirror-addr :9393 --mirror-token gw1=s3cret --kafka-addr :9092\n" +
			"  ferry edge --mirror-to center:9393 --mirror-edge-id gw1 --mirror-token s3cret",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			node := addNodeFlags(fs)
			mirrorAddr := fs.String("mirror-addr", ":9393", "mirror receiver listen address (edges dial it)")
			tokens := fs.StringArray("mirror-token", nil, "EDGE=TOKEN: an edge allowed to ship here and its token; repeat for more")
			tlsCert := fs.String("mirror-tls-cert", "", "PEM certificate (chain) for the mirror receiver: edges then connect over TLS; reloaded on SIGHUP")
			tlsKey := fs.String("mirror-tls-key", "", "PEM private key for --mirror-tls-cert")
			clientCA := fs.String("mirror-tls-client-ca", "", "PEM CA bundle: edges may authenticate with a client certificate signed by it, whose common name is their edge id (no token needed unless --mirror-token lists one for that edge)")
			template := fs.String("mirror-topic-template", "{edge}.{topic}", "name of an edge's topic at the center")
			edgeRetention := fs.Duration("mirror-edge-retention", mirror.DefaultEdgeRetention, "how long an edge that disconnected stays in the status and in the metrics labelled by edge before the center forgets it")
			cf := addClusterFlags(fs)
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args); err != nil {
					return err
				}
				logger, err := node.logger()
				if err != nil {
					return err
				}
				tok := map[string]string{}
				for _, t := range *tokens {
					e, v, ok := strings.Cut(t, "=")
					if !ok || e == "" || v == "" {
						return usagef("--mirror-token %q: want EDGE=TOKEN", t)
					}
					tok[e] = v
				}
				if len(tok) == 0 && *clientCA == "" {
					logger.Warn("no --mirror-token or --mirror-tls-client-ca given: no edge can ship here")
				}
				// Edges without a certificate use their token.
				tlsConf, err := node.serverTLS("mirror", *tlsCert, *tlsKey, *clientCA, tls.VerifyClientCertIfGiven)
				if err != nil {
					return err
				}
				co, err := cf.options()
				if err != nil {
					return err
				}
				return node.run(edge.Options{
					MirrorTLS: tlsConf, Cluster: co,
					Mode: "full", Logger: logger, AutoCreateTopics: true, DefaultPartitions: 1,
					MirrorAddr: *mirrorAddr, MirrorReceiver: mirror.ReceiverOptions{Tokens: tok, TopicTemplate: *template, EdgeRetention: *edgeRetention},
				})
			}
		},
	}
}
