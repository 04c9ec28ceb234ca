package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetCommit: v0-8
//
// Behavior:
//   - Stores offsets durably (bbolt, fsynced) before answering. Members
//     commit with their generation (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
//     REBALANCE_IN_PROGRESS while assignments are being synced); a simple
//     commit (generation -1, no member) is allowed while the group has no
//     members, as Kafka allows it for admin tools. A commit with an
//     instance id (v7+) is a member's: FENCED_INSTANCE_ID for a static
//     member's replaced member id (static.go).
//
// Version notes:
//   - v1: generation, member; v2-4: retention time (ignored); v6: leader
//     epoch; v7: InstanceID; v8: flexible

func init() { registerGroupAPI(8, 0, 8, serveOffsetCommit) }

func serveOffsetCommit(s *Server, _ context.Context, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	return s.opts.Groups.commit(kreq.(*kmsg.OffsetCommitRequest)), nil
}
