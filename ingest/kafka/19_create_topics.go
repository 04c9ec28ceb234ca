package kafka

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// CreateTopics: v0-7
//
// Behavior:
//   - NumPartitions -1 means the server's default; ReplicationFactor must be
//     -1 or 1 (one node), else INVALID_REPLICATION_FACTOR.
//   - Explicit replica assignments are accepted when they name live brokers
//     (this node): partitions 0..n-1, each with this node as its one
//     replica. One naming another broker, a duplicate broker or a gap in
//     the partitions is INVALID_REPLICA_ASSIGNMENT with the reason; with
//     NumPartitions or ReplicationFactor set as well, INVALID_REQUEST, as
//     Kafka answers.
//   - Configs are ferry's topic configs (Kafka's names where Kafka has one);
//     an unknown key or bad value is INVALID_CONFIG with a message.
//   - ValidateOnly checks everything and creates nothing.
//   - Errors per topic: TOPIC_ALREADY_EXISTS, INVALID_TOPIC_EXCEPTION,
//     INVALID_PARTITIONS, INVALID_CONFIG. __consumer_offsets already exists
//     (internal, see internal.go) with a group coordinator, and is a
//     reserved name without one.
//
// Version notes:
//   - v1: ErrorMessage, ValidateOnly; v5: flexible, NumPartitions,
//     ReplicationFactor and Configs in the response; v7: TopicID

func init() { register(19, 0, 7, serveCreateTopics) }

// checkAssignments checks CreateTopics' explicit replica assignments for a
// one-node cluster, returning why they cannot be honoured ("" if they can).
func (s *Server) checkAssignments(as []kmsg.CreateTopicsRequestTopicReplicaAssignment) string {
	seen := make(map[int32]bool, len(as))
	for _, a := range as {
		if a.Partition < 0 || int(a.Partition) >= len(as) || seen[a.Partition] {
			return fmt.Sprintf("partitions must be 0..%d, each once; got %d", len(as)-1, a.Partition)
		}
		seen[a.Partition] = true
		if msg := s.checkReplicas(a.Replicas); msg != "" {
			return fmt.Sprintf("partition %d: %s", a.Partition, msg)
		}
	}
	return ""
}

// checkReplicas checks one partition's replicas: one live broker (this
// node, alone; any live broker of a cluster), since partitions are not
// replicated yet.
func (s *Server) checkReplicas(replicas []int32) string {
	if len(replicas) == 0 {
		return "no replicas"
	}
	if len(replicas) > 1 {
		return fmt.Sprintf("%d replicas: partitions are not replicated yet (one replica each)", len(replicas))
	}
	for _, b := range s.cluster.Brokers() {
		if b.ID == replicas[0] {
			return ""
		}
	}
	return fmt.Sprintf("broker %d is not a live broker", replicas[0])
}

// assignedCreator is a TopicAdmin that places partitions as asked (a
// cluster's); alone, every replica is this node and CreateTopic serves.
type assignedCreator interface {
	CreateTopicAssigned(name string, assignment [][]int32, configs map[string]string) (flog.TopicInfo, error)
}

// createAssigned creates a topic with CreateTopics' explicit assignment.
func (s *Server) createAssigned(name string, as []kmsg.CreateTopicsRequestTopicReplicaAssignment, configs map[string]string) (flog.TopicInfo, error) {
	ac, ok := s.topics.(assignedCreator)
	if !ok {
		return s.topics.CreateTopic(name, int32(len(as)), configs)
	}
	assignment := make([][]int32, len(as))
	for _, a := range as {
		assignment[a.Partition] = a.Replicas
	}
	return ac.CreateTopicAssigned(name, assignment, configs)
}

func serveCreateTopics(s *Server, _ context.Context, cn *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.CreateTopicsRequest)
	resp := req.ResponseKind().(*kmsg.CreateTopicsResponse)
	for _, rt := range req.Topics {
		st := kmsg.NewCreateTopicsResponseTopic()
		st.Topic, st.NumPartitions, st.ReplicationFactor = rt.Topic, -1, -1
		fail := func(code int16, msg string) {
			st.ErrorCode = code
			if req.Version >= 1 {
				st.ErrorMessage = &msg
			}
		}
		parts := rt.NumPartitions
		if parts == -1 && len(rt.ReplicaAssignment) > 0 {
			parts = int32(len(rt.ReplicaAssignment))
		} else if parts == -1 {
			parts = s.opts.DefaultPartitions
		}
		configs := map[string]string{}
		for _, c := range rt.Configs {
			if c.Value != nil {
				configs[c.Name] = *c.Value
			}
		}
		switch {
		case !cn.canCreateTopic(rt.Topic):
			fail(kerr.TopicAuthorizationFailed.Code, "CREATE on the cluster or the topic is not allowed")
		case rt.ReplicationFactor != -1 && rt.ReplicationFactor != 1:
			fail(kerr.InvalidReplicationFactor.Code, fmt.Sprintf("replication factor %d: partitions are not replicated yet (1 only)", rt.ReplicationFactor))
		case len(rt.ReplicaAssignment) > 0 && (rt.NumPartitions != -1 || rt.ReplicationFactor != -1):
			fail(kerr.InvalidRequest.Code, "both numPartitions or replicationFactor and replicasAssignments were set")
		case len(rt.ReplicaAssignment) > 0 && s.checkAssignments(rt.ReplicaAssignment) != "":
			fail(kerr.InvalidReplicaAssignment.Code, s.checkAssignments(rt.ReplicaAssignment))
		case s.refuseCreate(rt.Topic) != nil:
			err := s.refuseCreate(rt.Topic)
			fail(errorCode(err), err.Error())
		case req.ValidateOnly:
			err := flog.ValidateTopicName(rt.Topic)
			if err == nil && parts <= 0 {
				err = fmt.Errorf("%w: %d", flog.ErrInvalidPartitions, parts)
			}
			if err == nil {
				err = flog.ValidateConfigs(configs)
			}
			if err == nil {
				err = s.log.CheckNewTopic(parts)
			}
			if err == nil {
				if _, terr := s.log.Topic(rt.Topic); terr == nil {
					err = fmt.Errorf("%w: %q", flog.ErrTopicExists, rt.Topic)
				}
			}
			if err != nil {
				fail(errorCode(err), err.Error())
			}
		case len(rt.ReplicaAssignment) > 0:
			info, err := s.createAssigned(rt.Topic, rt.ReplicaAssignment, configs)
			if err != nil {
				fail(errorCode(err), err.Error())
			} else {
				st.TopicID = info.ID
			}
		default:
			info, err := s.topics.CreateTopic(rt.Topic, parts, configs)
			if err != nil {
				fail(errorCode(err), err.Error())
			} else {
				st.TopicID = info.ID
			}
		}
		if st.ErrorCode == 0 {
			st.NumPartitions, st.ReplicationFactor = parts, 1
			if req.Version >= 5 {
				vals, explicit, _ := s.log.EffectiveConfigs(rt.Topic)
				if vals == nil { // validate-only: the topic does not exist
					vals, explicit = flog.DefaultConfigs(), map[string]bool{}
					for k, v := range configs {
						vals[k], explicit[k] = v, true
					}
				}
				for _, k := range flog.ConfigKeys() {
					c := kmsg.NewCreateTopicsResponseTopicConfig()
					c.Name, c.Value = k, kmsg.StringPtr(vals[k])
					c.Source = int8(kmsg.ConfigSourceDefaultConfig)
					if explicit[k] {
						c.Source = int8(kmsg.ConfigSourceDynamicTopicConfig)
					}
					st.Configs = append(st.Configs, c)
				}
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
