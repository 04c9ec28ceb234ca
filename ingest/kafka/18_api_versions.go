package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// ApiVersions: v0-3
//
// Behavior:
//   - Lists every API key registered by this package's files with the exact
//     version range its handler serves.
//   - A request at a version above 3 is answered (in conn.go, before
//     parsing) with a v0 response carrying UNSUPPORTED_VERSION and our
//     ApiVersions range, as Kafka does (KIP-511), so clients retry lower.
//
// Version notes:
//   - v1: ThrottleMillis
//   - v3: flexible; ClientSoftwareName/Version (accepted, not checked)

func init() { register(18, 0, 3, serveApiVersions) }

func serveApiVersions(s *Server, _ context.Context, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ApiVersionsRequest)
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	for _, key := range s.supportedKeys() {
		h := handlers[key]
		k := kmsg.NewApiVersionsResponseApiKey()
		k.ApiKey, k.MinVersion, k.MaxVersion = key, h.min, h.max
		resp.ApiKeys = append(resp.ApiKeys, k)
	}
	return resp, nil
}
