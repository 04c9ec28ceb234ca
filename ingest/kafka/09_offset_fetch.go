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
}

// fetchOffsets answers one group's topics (nil: all committed).
func (s *Server) fetchOffsets(group string, topics map[string][]int32, all bool) (map[string][]fetchedOffset, int16) {
	committed, err := s.opts.Groups.Committed(group)
	if err != nil {
		return nil, kerr.CoordinatorNotAvailable.Code
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
		for _, p := range ps {
			fo := fetchedOffset{partition: p, offset: -1, leaderEpoch: -1}
			if co, ok := committed[t][p]; ok {
				fo.offset, fo.leaderEpoch, fo.metadata = co.Offset, co.LeaderEpoch, co.Metadata
			}
			out[t] = append(out[t], fo)
		}
	}
	return out, 0
}

func serveOffsetFetch(s *Server, _ context.Context, _ *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.OffsetFetchRequest)
	resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			topics := map[string][]int32{}
			for _, t := range rg.Topics {
				topics[t.Topic] = t.Partitions
			}
			got, code := s.fetchOffsets(rg.Group, topics, rg.Topics == nil)
			sg := kmsg.NewOffsetFetchResponseGroup()
			sg.Group, sg.ErrorCode = rg.Group, code
			for t, fos := range got {
				st := kmsg.NewOffsetFetchResponseGroupTopic()
				st.Topic = t
				for _, fo := range fos {
					sp := kmsg.NewOffsetFetchResponseGroupTopicPartition()
					sp.Partition, sp.Offset, sp.LeaderEpoch, sp.Metadata = fo.partition, fo.offset, fo.leaderEpoch, fo.metadata
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
	got, code := s.fetchOffsets(req.Group, topics, req.Topics == nil && req.Version >= 2)
	resp.ErrorCode = code
	for t, fos := range got {
		st := kmsg.NewOffsetFetchResponseTopic()
		st.Topic = t
		for _, fo := range fos {
			sp := kmsg.NewOffsetFetchResponseTopicPartition()
			sp.Partition, sp.Offset, sp.LeaderEpoch, sp.Metadata = fo.partition, fo.offset, fo.leaderEpoch, fo.metadata
			st.Partitions = append(st.Partitions, sp)
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
