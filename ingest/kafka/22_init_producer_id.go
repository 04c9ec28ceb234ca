package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// InitProducerId: v0-4 (advertised only when the server has a ProducerIDs allocator)
//
// Behavior:
//   - Gives an idempotent producer a new producer id, never given before
//     (see ProducerIDs), with epoch 0. A producer re-initialising (v3+,
//     with its old id and epoch) gets a fresh id too, which Kafka permits
//     for non-transactional producers.
//   - With ACLs, the principal needs IDEMPOTENT_WRITE on the cluster or
//     WRITE on some topic (KIP-679), else CLUSTER_AUTHORIZATION_FAILED.
//   - Transactions are not supported (future work): a request with a
//     transactional id is answered at once with UNSUPPORTED_VERSION,
//     Kafka's error for a feature a broker lacks, so a transactional
//     client fails fast with a clear error instead of retrying. Clients
//     usually learn it earlier, from FindCoordinator for the transaction
//     coordinator (10_find_coordinator.go).
//
// Version notes:
//   - v2: flexible; v3: ProducerID/ProducerEpoch in the request

func init() {
	register(22, 0, 4, serveInitProducerID)
	needs[22] = func(s *Server) bool { return s.opts.ProducerIDs != nil }
}

func serveInitProducerID(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.InitProducerIDRequest)
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	resp.ProducerID, resp.ProducerEpoch = -1, -1
	switch {
	case req.TransactionalID != nil:
		resp.ErrorCode = kerr.UnsupportedVersion.Code
	case !c.mayProduceIdempotently():
		resp.ErrorCode = kerr.ClusterAuthorizationFailed.Code
	default:
		id, err := s.opts.ProducerIDs.Next()
		if err != nil {
			s.logger.Error("allocating a producer id", "err", err)
			resp.ErrorCode = kerr.KafkaStorageError.Code
			break
		}
		resp.ProducerID, resp.ProducerEpoch = id, 0
	}
	return resp, nil
}
