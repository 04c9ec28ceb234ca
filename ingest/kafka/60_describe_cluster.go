package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DescribeCluster: v0-2
//
// Behavior:
//   - The cluster id, the controller and the live brokers, from the
//     Cluster view as Metadata has them (alone: this node, at the
//     advertised host and port). Fenced brokers are not listed.
//   - The cluster's authorized operations when asked (acl.go's
//     authorizedOps: every operation without an authorizer, the
//     principal's with one). Like Kafka, no ACL guards the call itself.
//
// Version notes:
//   - v1: EndpointType: brokers (1) only; asking this broker listener for
//     controllers (2) is MISMATCHED_ENDPOINT_TYPE, as Kafka answers it
//   - v2: IncludeFencedBrokers, IsFenced (never)

func init() { register(60, 0, 2, serveDescribeCluster) }

func serveDescribeCluster(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.Version >= 1 && req.EndpointType != 1 {
		resp.ErrorCode = kerr.MismatchedEndpointType.Code
		resp.ErrorMessage = kmsg.StringPtr("this listener serves brokers, not controllers")
		return resp, nil
	}
	resp.EndpointType = 1
	resp.ClusterID, resp.ControllerID = s.opts.ClusterID, s.cluster.Controller()
	for _, br := range s.cluster.Brokers() {
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID, b.Host, b.Port, b.Rack = br.ID, br.Host, br.Port, br.Rack
		resp.Brokers = append(resp.Brokers, b)
	}
	if req.IncludeClusterAuthorizedOperations {
		resp.ClusterAuthorizedOperations = c.authorizedOps(kmsg.ACLResourceTypeCluster, clusterName)
	}
	return resp, nil
}
