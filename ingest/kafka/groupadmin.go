package kafka

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// What the coordinator tells operators (the admin API): groups, their
// members and assignments, and resetting a group's committed offsets.

// ErrGroupNotEmpty is returned by ResetOffsets when the group has members:
// as in Kafka, offsets are reset only while no consumer runs in the group.
var ErrGroupNotEmpty = errors.New("the group has active members: stop its consumers first")

// ErrUnknownGroup is returned by Group when no group has the id: no
// members and no committed offsets.
var ErrUnknownGroup = errors.New("unknown group")

// GroupInfo is a consumer group as an operator sees it.
type GroupInfo struct {
	Group        string       `json:"group"`
	State        string       `json:"state"` // Empty, PreparingRebalance, CompletingRebalance, Stable
	ProtocolType string       `json:"protocol_type"`
	Protocol     string       `json:"protocol"` // the assignor chosen, e.g. "cooperative-sticky"
	Generation   int32        `json:"generation"`
	Leader       string       `json:"leader,omitempty"`
	Members      []MemberInfo `json:"members"`
}

// MemberInfo is one member of a group. Assignment and Subscription are
// decoded for the "consumer" protocol type; other protocol types carry
// bytes ferry does not interpret.
type MemberInfo struct {
	ID         string `json:"id"`
	InstanceID string `json:"instance_id,omitempty"` // static members (group.instance.id)
	ClientID   string `json:"client_id"`
	Host       string `json:"host"`
	// Assignment is topic → partitions, sorted.
	Assignment   map[string][]int32 `json:"assignment"`
	Subscription []string           `json:"subscription,omitempty"`
}

// List lists every group with members or committed offsets, by id.
func (g *Groups) List() []GroupInfo {
	names := g.groupNames()
	out := make([]GroupInfo, 0, len(names))
	for _, name := range names {
		out = append(out, g.info(name))
	}
	return out
}

// Group describes one group; ErrUnknownGroup if it has neither members
// nor committed offsets.
func (g *Groups) Group(id string) (GroupInfo, error) {
	info := g.info(id)
	if len(info.Members) == 0 {
		committed, err := g.Committed(id)
		if err != nil {
			return GroupInfo{}, err
		}
		g.mu.Lock()
		_, known := g.groups[id]
		g.mu.Unlock()
		if len(committed) == 0 && !known {
			return GroupInfo{}, fmt.Errorf("%w: %q", ErrUnknownGroup, id)
		}
	}
	return info, nil
}

func (g *Groups) info(id string) GroupInfo {
	g.mu.Lock()
	defer g.mu.Unlock()
	info := GroupInfo{Group: id, State: string(stateEmpty), Members: []MemberInfo{}}
	gr := g.groups[id]
	if gr == nil {
		return info
	}
	info.State, info.ProtocolType, info.Protocol, info.Generation, info.Leader = string(gr.state), gr.protocolType, gr.protocol, gr.generation, gr.leader
	for _, mid := range gr.memberIDs() {
		m := gr.members[mid]
		mi := MemberInfo{ID: m.id, ClientID: m.clientID, Host: m.clientHost, Assignment: map[string][]int32{}}
		if m.instanceID != nil {
			mi.InstanceID = *m.instanceID
		}
		if gr.protocolType == "consumer" {
			var a kmsg.ConsumerMemberAssignment
			if len(m.assignment) > 0 && a.ReadFrom(m.assignment) == nil {
				for _, t := range a.Topics {
					ps := append(mi.Assignment[t.Topic], t.Partitions...)
					sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
					mi.Assignment[t.Topic] = ps
				}
			}
			var meta kmsg.ConsumerMemberMetadata
			if md := metadataFor(m.protocols, gr.protocol); len(md) > 0 && meta.ReadFrom(md) == nil {
				mi.Subscription = append(mi.Subscription, meta.Topics...)
				sort.Strings(mi.Subscription)
			}
		}
		info.Members = append(info.Members, mi)
	}
	return info
}

// CommittedOffsets returns a group's committed offsets: topic → partition
// → offset.
func (g *Groups) CommittedOffsets(id string) (map[string]map[int32]int64, error) {
	c, err := g.Committed(id)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[int32]int64, len(c))
	for t, ps := range c {
		out[t] = make(map[int32]int64, len(ps))
		for p, co := range ps {
			out[t][p] = co.Offset
		}
	}
	return out, nil
}

// ResetOffsets stores new committed offsets for partitions of one topic,
// durably, if the group has no members (ErrGroupNotEmpty otherwise); the
// check and the write happen under the coordinator's lock, so no consumer
// joins in between. The caller chooses the offsets (the log knows where
// partitions start and end, the coordinator does not).
func (g *Groups) ResetOffsets(id, topic string, offsets map[int32]int64) error {
	if id == "" {
		return errors.New("empty group id")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return errors.New("coordinator closed")
	}
	if gr := g.groups[id]; gr != nil && len(gr.members) > 0 {
		return fmt.Errorf("%w (group %q has %d)", ErrGroupNotEmpty, id, len(gr.members))
	}
	now := g.now().UnixMilli()
	puts := make(map[tpKey]committedOffset, len(offsets))
	for p, off := range offsets {
		puts[tpKey{topic, p}] = committedOffset{Offset: off, LeaderEpoch: -1, CommitMs: now}
	}
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	return g.store.write(ctx, id, puts, nil)
}

// Delete removes a group without members and its committed offsets
// (Kafka's DeleteGroups): ErrGroupNotEmpty while it has members,
// ErrUnknownGroup if there is nothing to delete.
func (g *Groups) Delete(id string) error {
	switch code := g.deleteGroup(id); code {
	case 0:
		return nil
	case kerr.NonEmptyGroup.Code:
		return fmt.Errorf("%w (group %q)", ErrGroupNotEmpty, id)
	case kerr.GroupIDNotFound.Code:
		return fmt.Errorf("%w: %q", ErrUnknownGroup, id)
	default:
		return fmt.Errorf("deleting group %q: %w", id, kerr.ErrorForCode(code))
	}
}

// deleteOffsets removes a group's committed offsets of some partitions
// (Kafka's OffsetDelete): GROUP_ID_NOT_FOUND for a group with neither
// members nor offsets; NON_EMPTY_GROUP for a group with members that is not
// a consumer group (its subscriptions cannot be read); in a consumer group
// with members, the partitions of topics a member subscribes to are kept
// and answered GROUP_SUBSCRIBED_TO_TOPIC. The codes returned are the
// group's and, per topic, the code of its partitions (0: deleted, or there
// was nothing to delete).
func (g *Groups) deleteOffsets(id string, topics map[string][]int32) (int16, map[string]int16) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return kerr.CoordinatorNotAvailable.Code, nil
	}
	committed, err := g.Committed(id)
	if err != nil {
		return storeCode(err), nil
	}
	gr := g.groups[id]
	if (gr == nil || len(gr.members) == 0) && len(committed) == 0 {
		return kerr.GroupIDNotFound.Code, nil
	}
	subscribed := map[string]bool{}
	if gr != nil && len(gr.members) > 0 {
		if gr.protocolType != "consumer" {
			return kerr.NonEmptyGroup.Code, nil
		}
		for _, m := range gr.members {
			var meta kmsg.ConsumerMemberMetadata
			if md := metadataFor(m.protocols, gr.protocol); len(md) > 0 && meta.ReadFrom(md) == nil {
				for _, t := range meta.Topics {
					subscribed[t] = true
				}
			}
		}
	}
	codes := make(map[string]int16, len(topics))
	var dels []tpKey
	for topic, parts := range topics {
		if subscribed[topic] {
			codes[topic] = kerr.GroupSubscribedToTopic.Code
			continue
		}
		codes[topic] = 0
		for _, p := range parts {
			if _, ok := committed[topic][p]; ok {
				dels = append(dels, tpKey{topic, p})
			}
		}
	}
	if len(dels) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
		err = g.store.write(ctx, id, nil, dels)
		cancel()
	}
	if err != nil {
		g.logger.Error("deleting committed offsets", "group", id, "err", err)
		return storeCode(err), nil
	}
	return 0, codes
}
