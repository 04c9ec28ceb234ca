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
//   - NumPartitions -1 means the server's default; ReplicationFactor -1 the
//     cluster's default (--default-replication-factor), else 1..5 in a
//     cluster and 1 for a node alone (INVALID_REPLICATION_FACTOR
//     otherwise; the cluster refuses more replicas than live brokers).
//   - Explicit replica assignments are accepted when they name live brokers
//     (this node, alone): partitions 0..n-1, each with 1..5 distinct
//     replicas, all partitions as many. One naming a broker that is not
//     live, a duplicate broker or a gap in the partitions is
//     INVALID_REPLICA_ASSIGNMENT with the reason; with
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

// checkReplicas checks one partition's replicas: distinct live brokers,
// 1..log.MaxReplicas of them in a cluster whose topic admin places
// replicas, one (this node) alone.
func (s *Server) checkReplicas(replicas []int32) string {
	if len(replicas) == 0 {
		return "no replicas"
	}
	if _, replicated := s.topics.(replicatedCreator); !replicated && len(replicas) > 1 {
		return fmt.Sprintf("%d replicas: a node alone holds the one replica of each partition", len(replicas))
	}
	if len(replicas) > flog.MaxReplicas {
		return fmt.Sprintf("%d replicas: at most %d", len(replicas), flog.MaxReplicas)
	}
	live := map[int32]bool{}
	for _, b := range s.cluster.Brokers() {
		live[b.ID] = true
	}
	seen := map[int32]bool{}
	for _, r := range replicas {
		switch {
		case seen[r]:
			return fmt.Sprintf("broker %d named twice", r)
		case !live[r]:
			return fmt.Sprintf("broker %d is not a live broker", r)
		}
		seen[r] = true
	}
	return ""
}

// replicatedCreator is a TopicAdmin that creates topics with a
// replication factor (a cluster's; 0: its default). Alone, every
// partition has one replica, this node.
type replicatedCreator interface {
	CreateTopicReplicated(name string, partitions, replicationFactor int32, configs map[string]string) (flog.TopicInfo, error)
}

// checkReplicationFactor says why CreateTopics' replication factor cannot
// be honoured ("" if it can); -1 is the default.
func (s *Server) checkReplicationFactor(rf int16) string {
	_, replicated := s.topics.(replicatedCreator)
	switch {
	case rf == -1 || rf == 1:
		return ""
	case !replicated:
		return fmt.Sprintf("replication factor %d: a node alone holds one replica of each partition (1 only)", rf)
	case rf < 1 || rf > flog.MaxReplicas:
		return fmt.Sprintf("replication factor %d: 1..%d", rf, flog.MaxReplicas)
	}
	return ""
}

// replicationFactor is a created topic's replication factor as the
// cluster placed it (1 alone).
func (s *Server) replicationFactor(topic string) int16 {
	if pv, ok := s.cluster.Partition(topic, 0); ok && len(pv.Replicas) > 0 {
		return int16(len(pv.Replicas))
	}
	return 1
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
		case s.checkReplicationFactor(rt.ReplicationFactor) != "":
			fail(kerr.InvalidReplicationFactor.Code, s.checkReplicationFactor(rt.ReplicationFactor))
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
			var info flog.TopicInfo
			var err error
			if rc, ok := s.topics.(replicatedCreator); ok {
				info, err = rc.CreateTopicReplicated(rt.Topic, parts, max(int32(rt.ReplicationFactor), 0), configs)
			} else {
				info, err = s.topics.CreateTopic(rt.Topic, parts, configs)
			}
			if err != nil {
				fail(errorCode(err), err.Error())
			} else {
				st.TopicID = info.ID
			}
		}
		if st.ErrorCode == 0 {
			st.NumPartitions, st.ReplicationFactor = parts, s.replicationFactor(rt.Topic)
			if req.ValidateOnly {
				st.ReplicationFactor = max(rt.ReplicationFactor, 1)
			}
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
