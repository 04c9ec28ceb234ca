package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	flog "ferry/log"
)

// Metadata: v0-12
//
// Behavior:
//   - The brokers and each partition's leader, leader epoch and replicas
//     come from the Cluster view: alone, this node at the advertised host
//     and port, leading every partition with itself as the only replica
//     and ISR; in a cluster, every live broker and the metadata's leaders.
//     A partition with no leader is LEADER_NOT_AVAILABLE, its leader -1.
//   - Null topics (v1+), or an empty list at v0, means every topic.
//   - An unknown topic is created when the server allows auto-creation and
//     the request does (AllowAutoTopicCreation, v4+; always at v0-3), with
//     the default partition count; otherwise UNKNOWN_TOPIC_OR_PARTITION.
//     An invalid name is INVALID_TOPIC_EXCEPTION.
//   - v10+: topics carry their ids; a topic asked for by id alone is found
//     by id.
//   - With ACLs: a listing of every topic leaves out those the principal
//     may not DESCRIBE; a topic asked for that it may not DESCRIBE, or may
//     not CREATE when it would be auto-created, is TOPIC_AUTHORIZATION_FAILED.
//   - With a group coordinator, __consumer_offsets is reported as an
//     internal topic with no partitions (committed offsets live in bbolt;
//     see internal.go); it is never auto-created.
//
// Version notes:
//   - v1: ControllerID, IsInternal; v2: ClusterID; v3: ThrottleMillis
//   - v4: AllowAutoTopicCreation; v5: OfflineReplicas; v7: LeaderEpoch
//   - v8: authorized operations of the cluster (v8-10) and of each topic,
//     when asked (acl.go's authorizedOps: every operation without an
//     authorizer); v9: flexible
//   - v10: topic ids; v11: cluster authorized operations removed

func init() { register(3, 0, 12, serveMetadata) }

func serveMetadata(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.MetadataRequest)
	resp := req.ResponseKind().(*kmsg.MetadataResponse)
	for _, br := range s.cluster.Brokers() {
		b := kmsg.NewMetadataResponseBroker()
		b.NodeID, b.Host, b.Port, b.Rack = br.ID, br.Host, br.Port, br.Rack
		resp.Brokers = append(resp.Brokers, b)
	}
	resp.ClusterID = &s.opts.ClusterID
	resp.ControllerID = s.cluster.Controller()
	if req.IncludeClusterAuthorizedOperations && req.Version <= 10 {
		resp.AuthorizedOperations = c.authorizedOps(kmsg.ACLResourceTypeCluster, clusterName)
	}

	var infos []flog.TopicInfo
	all := req.Topics == nil || (req.Version == 0 && len(req.Topics) == 0)
	if all {
		infos = s.log.Topics()
		if s.virtualOffsetsTopic(offsetsTopic) {
			infos = append(infos, offsetsTopicInfo())
		}
		if s.authorizing() {
			kept := infos[:0]
			for _, info := range infos {
				if c.allowedQuiet(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, info.Name) {
					kept = append(kept, info)
				}
			}
			infos = kept
		}
	}
	autoCreate := s.opts.AutoCreateTopics && (req.Version < 4 || req.AllowAutoTopicCreation)
	for _, rt := range req.Topics {
		name := ""
		if rt.Topic != nil {
			name = *rt.Topic
		} else if rt.TopicID != [16]byte{} {
			for _, t := range s.log.Topics() {
				if t.ID == rt.TopicID {
					name = t.Name
				}
			}
			if name == "" {
				mt := kmsg.NewMetadataResponseTopic()
				mt.TopicID, mt.ErrorCode = rt.TopicID, kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, mt)
				continue
			}
		}
		if !c.canTopic(kmsg.ACLOperationDescribe, name) {
			mt := kmsg.NewMetadataResponseTopic()
			mt.TopicID, mt.ErrorCode = rt.TopicID, kerr.TopicAuthorizationFailed.Code
			if rt.Topic != nil {
				mt.Topic = rt.Topic // asked by id, the name is not the principal's to learn
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		info, err := s.log.Topic(name)
		if errors.Is(err, flog.ErrUnknownTopic) && s.isInternalTopic(name) {
			info, err = offsetsTopicInfo(), nil
		}
		mayCreate := true
		if errors.Is(err, flog.ErrUnknownTopic) && autoCreate {
			if mayCreate = c.canCreateTopic(name); mayCreate {
				info, err = s.createTopic(name, s.opts.DefaultPartitions, nil)
			}
		}
		if err != nil {
			mt := kmsg.NewMetadataResponseTopic()
			mt.Topic, mt.ErrorCode = kmsg.StringPtr(name), errorCode(err)
			if errors.Is(err, flog.ErrUnknownTopic) {
				mt.ErrorCode = kerr.UnknownTopicOrPartition.Code
			}
			if !mayCreate {
				mt.ErrorCode = kerr.TopicAuthorizationFailed.Code
			}
			resp.Topics = append(resp.Topics, mt)
			continue
		}
		infos = append(infos, info)
	}
	for _, info := range infos {
		mt := kmsg.NewMetadataResponseTopic()
		mt.Topic, mt.TopicID = kmsg.StringPtr(info.Name), info.ID
		mt.IsInternal = s.isInternalTopic(info.Name)
		if req.IncludeTopicAuthorizedOperations {
			mt.AuthorizedOperations = c.authorizedOps(kmsg.ACLResourceTypeTopic, info.Name)
		}
		for p := int32(0); p < info.Partitions; p++ {
			mp := kmsg.NewMetadataResponseTopicPartition()
			mp.Partition = p
			if pv, ok := s.cluster.Partition(info.Name, p); ok {
				mp.Leader, mp.LeaderEpoch = pv.Leader, pv.LeaderEpoch
				mp.Replicas, mp.ISR, mp.OfflineReplicas = pv.Replicas, pv.ISR, pv.OfflineReplicas()
			} else {
				// The local log has it, the cluster's metadata not yet.
				mp.Leader, mp.Replicas, mp.ISR = -1, []int32{}, []int32{}
			}
			if mp.Leader < 0 {
				mp.ErrorCode = kerr.LeaderNotAvailable.Code
			}
			mt.Partitions = append(mt.Partitions, mp)
		}
		resp.Topics = append(resp.Topics, mt)
	}
	return resp, nil
}

// createTopic creates a topic for auto-creation and CreateTopics.
func (s *Server) createTopic(name string, partitions int32, configs map[string]string) (flog.TopicInfo, error) {
	if err := s.refuseCreate(name); err != nil {
		return flog.TopicInfo{}, err
	}
	info, err := s.topics.CreateTopic(name, partitions, configs)
	if errors.Is(err, flog.ErrTopicExists) { // raced with another creator
		return s.log.Topic(name)
	}
	return info, err
}
