package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// OffsetFetch: v0-8
//
// Behavior:
//   - Returns committed offsets (-1 where nothing is committed). Null
//     topics (v2+) means every topic the group has committed for.
//   - With ACLs: DESCRIBE on the group (GROUP_AUTHORIZATION_FAILED; before
//     v2, which has no top-level error, in every partition) and on each
//     topic (see fetchOffsets).
//
// Version notes:
//   - v2: all topics, top-level error; v5: leader epoch; v6: flexible;
//     v7: RequireStable (always stable: no transactions); v8: batched groups

func init() { registerGroupAPI(9, 0, 8, serveOffsetFetch) }

type fetchedOffset struct {
	partition   int32
	offset      int64
	leaderEpoch int32
	metadata    *string
	errorCode   int16
}

// fetchOffsets answers one group's topics (nil: all committed). With ACLs,
// the principal must DESCRIBE the group (else GROUP_AUTHORIZATION_FAILED)
// and each topic: one asked for is answered TOPIC_AUTHORIZATION_FAILED, one
// of "all" left out.
func (s *Server) fetchOffsets(c *conn, group string, topics map[string][]int32, all bool) (map[string][]fetchedOffset, int16) {
	if !c.canGroup(kmsg.ACLOperationDescribe, group) {
		return nil, kerr.GroupAuthorizationFailed.Code
	}
	if code := s.coordinatorCode(group); code != 0 {
		return nil, code
	}
	committed, err := s.opts.Groups.Committed(group)
	if err != nil {
		return nil, storeCode(err)
	}
	out := map[string][]fetchedOffset{}
	if all {
		for t, ps := range committed {
			for p := range ps {
				topics[t] = append(topics[t], p)
			}
		}
	}
	for t, ps := range topics {
		var code int16
		if all && !c.allowedQuiet(kmsg.ACLOperationDescribe, kmsg.ACLResourceTypeTopic, t) {
			continue
		} else if !all && !c.canTopic(kmsg.ACLOperationDescribe, t) {
			code = kerr.TopicAuthorizationFailed.Code
		}
		for _, p := range ps {
			fo := fetchedOffset{partition: p, offset: -1, leaderEpoch: -1, errorCode: code}
			if co, ok := committed[t][p]; ok && code == 0 {
				fo.offset, fo.leaderEpoch, fo.metadata = co.Offset, co.LeaderEpoch, co.Metadata
			}
			out[t] = append(out[t], fo)
		}
	}
	return out, 0
}

func serveOffsetFetch(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			topics := map[string][]int32{}
			for _, t := range rg.Topics {
				topics[t.Topic] = t.Partitions
			}
			got, code := s.fetchOffsets(c, rg.Group, topics, rg.Topics == nil)
			sg := kmsg.NewOffsetFetchResponseGroup()
			sg.Group, sg.ErrorCode = rg.Group, code
			for t, fos := range got {
				st := kmsg.NewOffsetFetchResponseGroupTopic()
				st.Topic = t
				for _, fo := range fos {
					sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					sp.Partition, sp.Offset, sp.LeaderEpoch, sp.Metadata, sp.ErrorCode = fo.partition, fo.offset, fo.leaderEpoch, fo.metadata, fo.errorCode
					st.Partitions = append(st.Partitions, sp)
				}
				sg.Topics = append(sg.Topics, st)
			}
			resp.Groups = append(resp.Groups, sg)
		}
		return resp, nil
	}
	topics := map[string][]int32{}
	for _, t := range req.Topics {
		topics[t.Topic] = t.Partitions
	}
	got, code := s.fetchOffsets(c, req.Group, topics, req.Topics == nil && req.Version >= 2)
	resp.ErrorCode = code
	if code != 0 && req.Version < 2 { // no top-level error: in every partition
		got = map[string][]fetchedOffset{}
		for t, ps := range topics {
			for _, p := range ps {
				got[t] = append(got[t], fetchedOffset{partition: p, offset: -1, leaderEpoch: -1, errorCode: code})
			}
		}
	}
	for t, fos := range got {
		st := kmsg.NewOffsetFetchResponseTopic()
		st.Topic = t
		for _, fo := range fos {
			sp := kmsg.NewOffsetFetchResponseTopicPartition()
			sp.Partition, sp.Offset, sp.LeaderEpoch, sp.Metadata, sp.ErrorCode = fo.partition, fo.offset, fo.leaderEpoch, fo.metadata, fo.errorCode
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
