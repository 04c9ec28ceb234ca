package kafka

import (
	"bytes"
	"slices"

	"github.com/nats-io/nuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Static membership (KIP-345, group.instance.id), as Kafka's classic group
// coordinator does it:
//
//   - A static member is known by its instance id; its member id is
//     "<instance id>-<unique>" (clients recognise a restarted leader by
//     that prefix). A join with an instance id and no member id is never
//     answered MEMBER_ID_REQUIRED.
//   - When a known instance joins again without a member id (the process
//     restarted), it gets a new member id that replaces the old one; the
//     old one is fenced: a join or sync it still has waiting, and every
//     later request that names it with the instance id, is answered
//     FENCED_INSTANCE_ID. If the group is Stable, the group's protocol
//     stays the one chosen, and the member's metadata for it is unchanged,
//     there is no rebalance: it gets the current generation and keeps its
//     assignment, and the leader id in the answer is the leader's id from
//     before the replacement, so a restarted leader does not take itself
//     for the leader and reassign. Otherwise the group rebalances, as for
//     any join.
//   - "Unchanged metadata", for protocol type "consumer", means the same
//     subscribed topics: the rest of a consumer's metadata (the partitions
//     it owned, its generation, for the cooperative assignors) always
//     differs after a restart, and comparing it would rebalance on every
//     restart. For other protocol types the bytes must be equal. (Kafka
//     only checks that the group's protocol stays the same; ferry also
//     rebalances when the subscription changed, so a member restarted with
//     new topics gets an assignment for them.)
//   - Sync, heartbeat, commit and leave that carry an instance id must name
//     its current member id (FENCED_INSTANCE_ID otherwise, UNKNOWN_MEMBER_ID
//     for an instance id the group does not know).
//   - LeaveGroup (v3+) removes a static member by instance id with an empty
//     member id (an administrator's removal), or by member id, with or
//     without its instance id, as Kafka does. Clients do not send it when a
//     static member closes; that is what keeps restarts from rebalancing.
//   - A static member that stops heartbeating is expired after its session
//     timeout like any member, and the group rebalances.

// currentMember validates a member id and, when given, the instance id it
// claims (Kafka's validateCurrentMember).
func (gr *group) currentMember(memberID string, instanceID *string) (*member, *kerr.Error) {
	if instanceID != nil {
		current, ok := gr.static[*instanceID]
		switch {
		case !ok:
			return nil, kerr.UnknownMemberID
		case current != memberID:
			return nil, kerr.FencedInstanceID
		}
	}
	m := gr.members[memberID]
	if m == nil {
		return nil, kerr.UnknownMemberID
	}
	return m, nil
}

// joinStatic finds or makes the member a join with an instance id is for.
// It returns an answer to send at once when a restarted member keeps its
// assignment without a rebalance; otherwise the join proceeds as any join.
func (g *Groups) joinStatic(gr *group, req *kmsg.JoinGroupRequest) (*member, *kmsg.JoinGroupResponse, *kerr.Error) {
	instance := *req.InstanceID
	oldID, known := gr.static[instance]
	if req.MemberID != "" {
		m, kerrv := gr.currentMember(req.MemberID, req.InstanceID)
		return m, nil, kerrv
	}
	if !known {
		m := &member{id: instance + "-" + nuid.Next(), instanceID: &instance}
		gr.static[instance] = m.id
		return m, nil, nil
	}
	m := gr.members[oldID]
	if m == nil { // cannot happen: removeMember forgets the instance
		delete(gr.static, instance)
		return g.joinStatic(gr, req)
	}
	leaderBefore := gr.leader
	unchanged := gr.state == stateStable && gr.keepsProtocol(m, req.Protocols)
	g.failWaiters(gr, m, kerr.FencedInstanceID.Code)
	delete(gr.members, oldID)
	m.id = instance + "-" + nuid.Next()
	gr.members[m.id] = m
	gr.static[instance] = m.id
	if gr.leader == oldID {
		gr.leader = m.id
	}
	g.logger.Info("static member rejoined; its old member id is fenced", "group", gr.name, "instance", instance,
		"old_member", oldID, "member", m.id, "rebalance", !unchanged)
	if !unchanged {
		return m, nil, nil
	}
	r := kmsg.NewPtrJoinGroupResponse()
	r.Generation, r.LeaderID, r.MemberID = gr.generation, leaderBefore, m.id
	r.ProtocolType, r.Protocol = kmsg.StringPtr(gr.protocolType), kmsg.StringPtr(gr.protocol)
	return m, r, nil
}

// keepsProtocol reports whether the group's protocol stays the chosen one
// with a member's new protocols, and the member's metadata for it means
// what it did.
func (gr *group) keepsProtocol(m *member, protocols []kmsg.JoinGroupRequestProtocol) bool {
	old := m.protocols
	m.protocols = protocols
	next := gr.chooseProtocol()
	m.protocols = old
	if next != gr.protocol {
		return false
	}
	return sameMetadata(gr.protocolType, metadataFor(old, next), metadataFor(protocols, next))
}

func metadataFor(ps []kmsg.JoinGroupRequestProtocol, name string) []byte {
	for _, p := range ps {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

// sameMetadata compares two members' metadata for one protocol: consumers'
// by their subscribed topics, anything else byte for byte.
func sameMetadata(protocolType string, a, b []byte) bool {
	if protocolType == "consumer" {
		var ma, mb kmsg.ConsumerMemberMetadata
		if ma.ReadFrom(a) == nil && mb.ReadFrom(b) == nil {
			ta, tb := slices.Clone(ma.Topics), slices.Clone(mb.Topics)
			slices.Sort(ta)
			slices.Sort(tb)
			return slices.Equal(ta, tb)
		}
	}
	return bytes.Equal(a, b)
}

// leave handles one member of a LeaveGroup: by member id (v0-2, or v3+
// with or without its instance id), or by instance id alone (v3+, empty
// member id).
func (g *Groups) leave(groupID, memberID string, instanceID *string) int16 {
	g.mu.Lock()
	defer g.mu.Unlock()
	gr := g.groups[groupID]
	if gr == nil {
		return kerr.UnknownMemberID.Code
	}
	var m *member
	switch {
	case memberID == "" && instanceID != nil:
		if id, ok := gr.static[*instanceID]; ok {
			m = gr.members[id]
		}
		if m == nil {
			return kerr.UnknownMemberID.Code
		}
	case gr.pending[memberID]:
		delete(gr.pending, memberID)
		return 0
	default:
		var kerrv *kerr.Error
		if m, kerrv = gr.currentMember(memberID, instanceID); kerrv != nil {
			return kerrv.Code
		}
	}
	g.logger.Info("member left", "group", gr.name, "member", m.id)
	g.removeMember(gr, m)
	g.rebalanceAfterRemoval(gr)
	return 0
}
