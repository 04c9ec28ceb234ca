package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// DeleteTopics: v0-6
//
// Behavior:
//   - Deletes each topic and all its data; UNKNOWN_TOPIC_OR_PARTITION for a
//     topic that does not exist, UNKNOWN_TOPIC_ID for an unknown id (v6).
//   - The internal __consumer_offsets (internal.go) is not deleted:
//     INVALID_TOPIC_EXCEPTION.
//
// Version notes:
//   - v4: flexible; v5: ErrorMessage; v6: topics by name or id

func init() { register(20, 0, 6, serveDeleteTopics) }

func serveDeleteTopics(s *Server, _ context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.DeleteTopicsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteTopicsResponse)
	type target struct {
		name string
		id   [16]byte
		byID bool // the request named it by id only
	}
	var targets []target
	if req.Version >= 6 {
		for _, t := range req.Topics {
			tg := target{id: t.TopicID, byID: t.Topic == nil}
			if t.Topic != nil {
				tg.name = *t.Topic
			}
			targets = append(targets, tg)
		}
	} else {
		for _, n := range req.TopicNames {
			targets = append(targets, target{name: n})
		}
	}
	for _, tg := range targets {
		st := kmsg.NewDeleteTopicsResponseTopic()
		st.TopicID = tg.id
		if tg.name == "" && tg.id != [16]byte{} {
			for _, t := range s.log.Topics() {
				if t.ID == tg.id {
					tg.name = t.Name
				}
			}
			if tg.name == "" {
				st.ErrorCode = kerr.UnknownTopicID.Code
				resp.Topics = append(resp.Topics, st)
				continue
			}
		}
		// Asked by id, the name is answered only to a principal that may
		// describe the topic (as Kafka does).
		if !tg.byID || c.canTopic(kmsg.ACLOperationDescribe, tg.name) {
			st.Topic = kmsg.StringPtr(tg.name)
		}
		if !c.canTopic(kmsg.ACLOperationDelete, tg.name) {
			st.ErrorCode = kerr.TopicAuthorizationFailed.Code
			resp.Topics = append(resp.Topics, st)
			continue
		}
		err := errOffsetsTopic
		if !s.frozenOffsetsTopic(tg.name) {
			err = s.topics.DeleteTopic(tg.name)
		}
		if err != nil {
			st.ErrorCode = errorCode(err)
			if req.Version >= 5 {
				st.ErrorMessage = errorMessage(err)
			}
		}
		resp.Topics = append(resp.Topics, st)
	}
	return resp, nil
}
