package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FindCoordinator: v0-4 (with the consumer-group APIs)
//
// Behavior:
//   - The Cluster view names a group's coordinator: alone, this node
//     coordinates every group; in a cluster, the leader of the group's
//     __consumer_offsets partition (OffsetsPartition), named even while
//     it loads the partition (its group APIs then answer
//     COORDINATOR_LOAD_IN_PROGRESS); one that is not available is
//     COORDINATOR_NOT_AVAILABLE.
//   - Transactions are not supported (future work): a transaction
//     coordinator (key type 1) is answered at once with UNSUPPORTED_VERSION
//     and a message saying so, Kafka's error for a feature a broker lacks,
//     which clients do not retry (the retriable COORDINATOR_NOT_AVAILABLE
//     kept them waiting 10-30 s). Any other key type is INVALID_REQUEST, as
//     Kafka answers it.
//
// Version notes:
//   - v1: KeyType, ErrorMessage; v3: flexible; v4: batched CoordinatorKeys

func init() { registerGroupAPI(10, 0, 4, serveFindCoordinator) }

// errTransactionsUnsupported is the message clients see for any
// transactional request.
const errTransactionsUnsupported = "transactions are not supported by ferry (idempotent producers are)"

func serveFindCoordinator(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	answer := func(key string) (int32, string, int32, int16, *string) {
		switch req.CoordinatorType {
		case 0:
		case 1:
			return -1, "", -1, kerr.UnsupportedVersion.Code, kmsg.StringPtr(errTransactionsUnsupported)
		default:
			return -1, "", -1, kerr.InvalidRequest.Code, kmsg.StringPtr("unknown coordinator type")
		}
		if !cn.canGroup(kmsg.ACLOperationDescribe, key) {
			return -1, "", -1, kerr.GroupAuthorizationFailed.Code, nil
		}
		b, ok := s.cluster.Coordinator(key)
		if !ok {
			return -1, "", -1, kerr.CoordinatorNotAvailable.Code, nil
		}
		return b.ID, b.Host, b.Port, 0, nil
	}
	if req.Version >= 4 {
		for _, key := range req.CoordinatorKeys {
			c := kmsg.NewFindCoordinatorResponseCoordinator()
			c.Key = key
			c.NodeID, c.Host, c.Port, c.ErrorCode, c.ErrorMessage = answer(key)
			resp.Coordinators = append(resp.Coordinators, c)
		}
		return resp, nil
	}
	resp.NodeID, resp.Host, resp.Port, resp.ErrorCode, resp.ErrorMessage = answer(req.CoordinatorKey)
	return resp, nil
}
