package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// Adding and removing voters: hashicorp/raft's AddVoter and RemoveServer,
// run by the controller (the raft leader) on any node's request. The voter
// set given by --cluster-voters only bootstraps a new cluster; from then on
// raft's configuration, in its log, is the voter set.
//
// Adding is refused unless the node answers on the address given as the
// node id given (Request.Identify, asked by the controller before the
// configuration changes): raft would otherwise count a voter that is not
// there (a typo, a node not started yet) in every quorum from then on.
//
// Removing is refused when it would leave no voter, when the voters left
// would not have a live majority (registered and unfenced brokers: the
// quorum would be lost the moment the change commits), and when the voter
// is a broker that still holds replicas (reassign them away first: its
// data would otherwise go with it).

// ErrVoterChange: a voter change refused by the rules above (the error
// says which).
var ErrVoterChange = errors.New("cluster: voter change refused")

// VoterChange is a request to the controller to add (Addr set) or remove
// a voter.
type VoterChange struct {
	ID     int32  `json:"id"`
	Addr   string `json:"addr,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// VoterStatus is one voter of the raft configuration.
type VoterStatus struct {
	ID   int32  `json:"id"`
	Addr string `json:"addr"`
	// Voter is false for a member raft holds without a vote (one being
	// added: a nonvoter until it catches up).
	Voter bool `json:"voter"`
	// Live: registered as a broker and not fenced.
	Live bool `json:"live"`
}

// Voters are the members of the raft configuration, by id.
func (n *Node) Voters() ([]VoterStatus, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	im := n.image()
	var out []VoterStatus
	for _, s := range f.Configuration().Servers {
		id, err := strconv.ParseInt(string(s.ID), 10, 32)
		if err != nil {
			continue
		}
		b := im.Brokers[int32(id)]
		out = append(out, VoterStatus{ID: int32(id), Addr: string(s.Address), Voter: s.Suffrage == raft.Voter, Live: b != nil && !b.Fenced})
	}
	slices.SortFunc(out, func(a, b VoterStatus) int { return int(a.ID - b.ID) })
	return out, nil
}

// AddVoter makes id (listening at addr, started with --cluster-join or
// the new voter list) a voter, from any node; it returns once raft has
// committed the new configuration.
func (n *Node) AddVoter(ctx context.Context, id int32, addr string) error {
	return n.changeVoter(ctx, VoterChange{ID: id, Addr: addr})
}

// RemoveVoter takes id out of the voters, from any node, under the rules
// above.
func (n *Node) RemoveVoter(ctx context.Context, id int32) error {
	return n.changeVoter(ctx, VoterChange{ID: id, Remove: true})
}

func (n *Node) changeVoter(ctx context.Context, c VoterChange) error {
	for {
		resp, err := n.request(ctx, Request{Voter: &c})
		if err == nil {
			if err = resp.err(); err == nil {
				if err := n.WaitIndex(ctx, resp.Index); err != nil {
					return err
				}
				return n.waitVoterChange(ctx, c)
			}
			if !errors.Is(err, ErrNoController) {
				return err
			}
		} else if !errors.Is(err, ErrNoController) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%v)", ErrNoController, ctx.Err())
		case <-n.stop:
			return ErrClosed
		case <-time.After(n.cfg.HeartbeatInterval / 4):
		}
	}
}

// waitVoterChange waits until this node's raft configuration shows c: the
// controller committed it, and this node's log gets it a heartbeat later,
// so a caller reading Voters here sees its own change.
func (n *Node) waitVoterChange(ctx context.Context, c VoterChange) error {
	sid := raft.ServerID(strconv.Itoa(int(c.ID)))
	for {
		f := n.raft.GetConfiguration()
		if err := f.Error(); err != nil {
			return err
		}
		present := slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool {
			return s.ID == sid && s.Suffrage == raft.Voter
		})
		if present != c.Remove {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: voter change committed, not yet seen here: %w", ctx.Err())
		case <-n.stop:
			return ErrClosed
		case <-time.After(n.cfg.HeartbeatInterval / 4):
		}
	}
}

// serveVoter applies a voter change as the controller.
func (n *Node) serveVoter(ctx context.Context, c VoterChange) Response {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return responseFor(0, 0, err)
	}
	conf := f.Configuration()
	sid := raft.ServerID(strconv.Itoa(int(c.ID)))
	timeout := n.cfg.ProposeTimeout
	if d, ok := ctx.Deadline(); ok {
		if timeout = min(timeout, time.Until(d)); timeout <= 0 {
			return responseFor(0, 0, ctx.Err())
		}
	}
	var fut raft.IndexFuture
	if c.Remove {
		if err := checkRemoveVoter(conf, n.image(), c.ID); err != nil {
			return responseFor(0, 0, err)
		}
		fut = n.raft.RemoveServer(sid, f.Index(), timeout)
	} else {
		if c.ID < 0 || strings.TrimSpace(c.Addr) == "" {
			return responseFor(0, 0, fmt.Errorf("%w: voter %d at %q: want an id and HOST:PORT", ErrVoterChange, c.ID, c.Addr))
		}
		for _, s := range conf.Servers {
			if s.ID == sid && s.Suffrage == raft.Voter {
				if string(s.Address) == c.Addr {
					return responseFor(n.fsm.Index(), 0, nil) // already a voter there
				}
				return responseFor(0, 0, fmt.Errorf("%w: voter %d is at %s, not %s (remove it first)", ErrVoterChange, c.ID, s.Address, c.Addr))
			}
			if s.Address == raft.ServerAddress(c.Addr) && s.ID != sid {
				return responseFor(0, 0, fmt.Errorf("%w: %s is voter %s's address", ErrVoterChange, c.Addr, s.ID))
			}
		}
		if err := n.checkNewVoter(ctx, c.ID, c.Addr); err != nil {
			return responseFor(0, 0, err)
		}
		fut = n.raft.AddVoter(sid, raft.ServerAddress(c.Addr), f.Index(), timeout)
	}
	if err := fut.Error(); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return responseFor(0, 0, ErrNoController)
		}
		return responseFor(0, 0, fmt.Errorf("cluster: raft configuration change: %w", err))
	}
	n.log.Info("cluster: voters changed", "voter", c.ID, "addr", c.Addr, "removed", c.Remove)
	// The configuration is raft's, not the image's: the caller waits for
	// the image as it was (nothing of it changed).
	return responseFor(n.fsm.Index(), 0, nil)
}

// identifyTimeout bounds the controller's check of a voter to add.
const identifyTimeout = 5 * time.Second

// checkNewVoter asks the node at addr who it is: it must answer, as id.
func (n *Node) checkNewVoter(ctx context.Context, id int32, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, identifyTimeout)
	defer cancel()
	resp, err := n.cfg.Caller.Call(ctx, addr, Request{Identify: true})
	if err == nil {
		err = resp.err()
	}
	if err != nil {
		// %v, not %w: the cause (an unreachable address reads as "no
		// controller") must not make the caller retry.
		return fmt.Errorf("%w: no node answers as voter %d at %s (start it with --cluster-join first, and check the address): %v",
			ErrVoterChange, id, addr, err)
	}
	if resp.Value != int64(id) {
		return fmt.Errorf("%w: the node at %s is node %d, not %d", ErrVoterChange, addr, resp.Value, id)
	}
	return nil
}

// checkRemoveVoter is the rule for removing id from conf.
func checkRemoveVoter(conf raft.Configuration, im *Image, id int32) error {
	sid := raft.ServerID(strconv.Itoa(int(id)))
	voters, found := 0, false
	live := 0
	for _, s := range conf.Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		if s.ID == sid {
			found = true
			continue
		}
		voters++
		if i, err := strconv.ParseInt(string(s.ID), 10, 32); err == nil {
			if b := im.Brokers[int32(i)]; b != nil && !b.Fenced {
				live++
			}
		}
	}
	switch {
	case !found:
		return fmt.Errorf("%w: %d is not a voter", ErrVoterChange, id)
	case voters == 0:
		return fmt.Errorf("%w: %d is the last voter", ErrVoterChange, id)
	case live < voters/2+1:
		return fmt.Errorf("%w: the %d voters left would have %d live, short of a majority (%d): bring them back first", ErrVoterChange, voters, live, voters/2+1)
	}
	var held []string
	for _, name := range im.TopicNames() {
		for i, p := range im.Topics[name].Partitions {
			if slices.Contains(p.Replicas, id) {
				held = append(held, name+"-"+strconv.Itoa(i))
			}
		}
	}
	if len(held) > 0 {
		eg := held[:min(len(held), 5)]
		return fmt.Errorf("%w: broker %d still holds replicas of %d partitions (%s): reassign them away first (ferry cluster reassign)", ErrVoterChange, id, len(held), strings.Join(eg, ", "))
	}
	return nil
}
