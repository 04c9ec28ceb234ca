package cluster

import (
	"context"
	"maps"
	"sync"
	"time"
)

// Heartbeat is what a broker tells the controller every heartbeat
// interval: who it is in this run and where it serves.
type Heartbeat struct {
	Broker      int32             `json:"broker"`
	Incarnation uint64            `json:"incarnation"`
	Endpoints   map[string]string `json:"endpoints"`
	Rack        string            `json:"rack,omitempty"`
	// CleanShutdown: this run started after a clean shutdown of the
	// previous one (its log says so). Registered with the incarnation;
	// false takes the broker out of every ELR.
	CleanShutdown bool `json:"clean_shutdown,omitempty"`
}

// proposer applies a record through raft and answers its result.
type proposer interface {
	propose(ctx context.Context, r Record) (Result, error)
	image() *Image
}

// controller is what the raft leader does about broker liveness. It keeps
// when it last heard from each broker on its own monotonic clock (Go's
// time.Now carries one), and never trusts another node's clock: a new
// controller starts with no observations, so every broker gets a fresh
// session timeout from the moment this node leads.
type controller struct {
	p              proposer
	now            func() time.Time
	sessionTimeout time.Duration

	// defaults are this controller's topic defaults (its flags), put in
	// the image when it differs.
	defaults Defaults

	mu       sync.Mutex
	lastSeen map[int32]time.Time // by broker id, on c.now's clock
}

func newController(p proposer, now func() time.Time, sessionTimeout time.Duration, defaults Defaults) *controller {
	return &controller{p: p, now: now, sessionTimeout: sessionTimeout, defaults: defaults, lastSeen: map[int32]time.Time{}}
}

// reset forgets every observation: called when this node becomes the
// controller. prev is the broker that led raft before this node (-1 when
// unknown) and prevContact when this node last heard from it as a raft
// follower (zero when never): the previous controller is the one broker
// whose silence this node has itself observed, so its session runs from
// then instead of from now. Every other broker gets a fresh session
// timeout, as in Kafka's KRaft, and so does the previous controller when
// that contact is a session timeout old or more (a quorum that was lost
// and has healed: this node has not been watching it, and it may well be
// alive) or lies in the future.
func (c *controller) reset(prev int32, prevContact time.Time) {
	c.mu.Lock()
	c.lastSeen = map[int32]time.Time{}
	// A zero contact's age saturates far above any session timeout.
	if age := c.now().Sub(prevContact); prev >= 0 && age > 0 && age < c.sessionTimeout {
		c.lastSeen[prev] = prevContact
	}
	c.mu.Unlock()
}

// heartbeat records a broker's sign of life and registers or unfences it
// when the image does not show it as it is.
func (c *controller) heartbeat(ctx context.Context, hb Heartbeat) error {
	c.mu.Lock()
	c.lastSeen[hb.Broker] = c.now()
	c.mu.Unlock()
	b := c.p.image().Brokers[hb.Broker]
	switch {
	case b == nil || b.Incarnation != hb.Incarnation || b.Rack != hb.Rack || !maps.Equal(b.Endpoints, hb.Endpoints):
		r, err := c.p.propose(ctx, Record{Op: OpRegisterBroker, Broker: hb.Broker, Incarnation: hb.Incarnation, Endpoints: hb.Endpoints, Rack: hb.Rack, CleanShutdown: hb.CleanShutdown})
		if err == nil {
			err = r.Err
		}
		return err
	case b.Fenced:
		r, err := c.p.propose(ctx, Record{Op: OpUnfenceBroker, Broker: hb.Broker, Incarnation: hb.Incarnation})
		if err == nil {
			err = r.Err
		}
		return err
	}
	return nil
}

// tick fences every unfenced broker not heard from for a session timeout.
// A broker this controller has not heard from at all is given the timeout
// from now (its grace period). It also puts the controller's topic
// defaults in the image when the image has others.
func (c *controller) tick(ctx context.Context) error {
	now := c.now()
	im := c.p.image()
	var fence []Record
	if im.Defaults != c.defaults {
		fence = append(fence, Record{Op: OpClusterDefaults, ReplicationFactor: c.defaults.ReplicationFactor, MinISR: c.defaults.MinInsyncReplicas})
	}
	c.mu.Lock()
	for _, id := range im.BrokerIDs(true) {
		b := im.Brokers[id]
		at, ok := c.lastSeen[id]
		if !ok {
			c.lastSeen[id] = now
			continue
		}
		if now.Sub(at) > c.sessionTimeout {
			fence = append(fence, Record{Op: OpFenceBroker, Broker: id, Incarnation: b.Incarnation})
		}
	}
	c.mu.Unlock()
	for _, r := range fence {
		if _, err := c.p.propose(ctx, r); err != nil {
			return err
		}
	}
	return nil
}
