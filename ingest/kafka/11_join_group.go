package kafka

import (
	"context"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// JoinGroup: v0-7
//
// Behavior:
//   - Classic group protocol. A join starts (or joins) a rebalance and
//     waits until every member has rejoined, or the rebalance timeout has
//     removed those that did not; then every joiner gets the new generation,
//     the chosen protocol and the leader, and the leader gets every member's
//     metadata to compute assignments.
//   - The first rebalance of an empty group waits the initial rebalance
//     delay (GroupsOptions.InitialRebalanceDelay, Kafka's
//     group.initial.rebalance.delay.ms, 3 s by default), again for each
//     member that joins meanwhile, up to the rebalance timeout: consumers
//     started together share one generation.
//   - v4+: a join without a member id gets MEMBER_ID_REQUIRED with an id to
//     rejoin with (KIP-394). An unknown member id is UNKNOWN_MEMBER_ID.
//   - INVALID_SESSION_TIMEOUT outside 1 s..30 min; INCONSISTENT_GROUP_PROTOCOL
//     when the protocol type differs or no protocol is shared.
//   - v5+ static membership (group.instance.id, KIP-345; see static.go):
//     no MEMBER_ID_REQUIRED; a restarted instance replaces its old member
//     id, which is then FENCED_INSTANCE_ID, and keeps its assignment with no
//     rebalance while the group is Stable and its protocols are unchanged.
//
// Version notes:
//   - v1: RebalanceTimeout; v5: InstanceID; v6: flexible; v7: protocol type
//     and name in the response

func init() { registerGroupAPI(11, 0, 7, serveJoinGroup) }

func serveJoinGroup(s *Server, ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	if req := kreq.(*kmsg.JoinGroupRequest); !c.canGroup(kmsg.ACLOperationRead, req.Group) {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation = kerr.GroupAuthorizationFailed.Code, -1
		return resp, nil
	}
	if req := kreq.(*kmsg.JoinGroupRequest); s.coordinatorCode(req.Group) != 0 {
		resp := req.ResponseKind().(*kmsg.JoinGroupResponse)
		resp.ErrorCode, resp.Generation = s.coordinatorCode(req.Group), -1
		return resp, nil
	}
	host, _, _ := net.SplitHostPort(c.nc.RemoteAddr().String())
	return s.opts.Groups.join(ctx, kreq.(*kmsg.JoinGroupRequest), c.clientID, "/"+host), nil
}
