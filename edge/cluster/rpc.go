package cluster

import (
	"context"
	"errors"

	"ferry/devices"
)

// Request is what a node asks the controller: one of its fields is set.
type Request struct {
	Heartbeat *Heartbeat `json:"heartbeat,omitempty"`
	Propose   *Record    `json:"propose,omitempty"`
	// Voter adds or removes a voter (voters.go).
	Voter *VoterChange `json:"voter,omitempty"`
	// Identify asks any node, controller or not, for its node id
	// (Response.Value): the controller checks a voter to add answers at
	// its address as the node it is said to be.
	Identify bool `json:"identify,omitempty"`
}

// Response is the controller's answer. Code names a known error (so the
// caller gets the same sentinel back), Error says it in words.
type Response struct {
	Index uint64 `json:"index"`
	Value int64  `json:"value,omitempty"`
	Code  string `json:"code,omitempty"`
	Error string `json:"error,omitempty"`
	// ACLs are the bindings a delete_acls record removed.
	ACLs []devices.KafkaACL `json:"acls,omitempty"`
}

const codeNotController = "not_controller"

// codes are the errors a Response carries by name.
var codes = map[string]error{
	codeNotController:        ErrNoController,
	"topic_exists":           ErrTopicExists,
	"unknown_topic":          ErrUnknownTopic,
	"unknown_broker":         ErrUnknownBroker,
	"stale_incarnation":      ErrStaleIncarnation,
	"invalid_assignment":     ErrInvalidAssignment,
	"invalid_record":         ErrInvalidRecord,
	"not_enough_brokers":     ErrNotEnoughBrokers,
	"invalid_config":         ErrInvalidConfig,
	"fenced_leader_epoch":    ErrFencedLeaderEpoch,
	"invalid_update_version": ErrInvalidUpdateVersion,
	"ineligible_replica":     ErrIneligibleReplica,
	"no_reassignment":        ErrNoReassignment,
	"voter_change":           ErrVoterChange,
}

// codedError keeps the words of an error that came over the wire while
// matching its sentinel with errors.Is.
type codedError struct {
	sentinel error
	msg      string
}

func (e codedError) Error() string { return e.msg }
func (e codedError) Unwrap() error { return e.sentinel }

func (r Response) err() error {
	if r.Code == "" && r.Error == "" {
		return nil
	}
	if s := codes[r.Code]; s != nil {
		return codedError{sentinel: s, msg: r.Error}
	}
	return errors.New(r.Error)
}

func responseFor(index uint64, value int64, err error) Response {
	resp := Response{Index: index, Value: value}
	if err == nil {
		return resp
	}
	resp.Error = err.Error()
	for code, s := range codes {
		if errors.Is(err, s) {
			resp.Code = code
			break
		}
	}
	return resp
}

// Serve answers a request as the controller. A node that is not the
// controller answers not_controller, and the caller looks for the new one.
func (n *Node) Serve(ctx context.Context, req Request) Response {
	if req.Identify {
		return Response{Value: int64(n.cfg.NodeID)}
	}
	if !n.serving() {
		return responseFor(0, 0, ErrNoController)
	}
	switch {
	case req.Heartbeat != nil:
		err := n.ctrl.heartbeat(ctx, *req.Heartbeat)
		return responseFor(n.fsm.Index(), 0, err)
	case req.Propose != nil:
		r, err := n.prepare(*req.Propose)
		if err != nil {
			return responseFor(0, 0, err)
		}
		res, err := n.propose(ctx, r)
		if err == nil {
			err = res.Err
		}
		resp := responseFor(n.fsm.Index(), res.Value, err)
		resp.ACLs = res.ACLs
		return resp
	case req.Voter != nil:
		return n.serveVoter(ctx, *req.Voter)
	}
	return responseFor(0, 0, ErrInvalidRecord)
}
