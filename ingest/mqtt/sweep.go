package mqtt

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
)

// Session and in-flight expiry, swept once a second over the clients that
// can have something to expire.
//
// mochi's event loop does both every second by copying its whole client
// map (Clients.GetAll) twice: with every device idle that was about 2 MiB
// allocated per second at 10,000 connections, garbage that kept the GC
// running and lifted the heap's resident size by a third. ferry stops
// those two tickers (stopMochiSweeps) and runs the same passes here over
// the sessions whose clients are offline (tracked by sweepHook) and the
// connected clients with something in flight, without copying anything.

// sweepInterval is how often expiry is checked: mochi's one second.
const sweepInterval = time.Second

// stopMochiSweeps stops mochi's once-a-second client and in-flight expiry
// tickers (fields of its unexported event loop, reached by reflection;
// pinned by TestMochiSweepsStopped). It fails, rather than letting mochi
// sweep as well, if a mochi version moved them.
func stopMochiSweeps(b *mqtt.Server) error {
	lp := reflect.ValueOf(b).Elem().FieldByName("loop")
	if !lp.IsValid() || lp.Kind() != reflect.Pointer || lp.IsNil() {
		return errors.New("mqtt: mochi's event loop has no loop field: its expiry passes cannot be replaced")
	}
	tickerType := reflect.TypeOf((*time.Ticker)(nil))
	for _, name := range []string{"clientExpiry", "inflightExpiry"} {
		f := lp.Elem().FieldByName(name)
		if !f.IsValid() || f.Type() != tickerType {
			return fmt.Errorf("mqtt: mochi's event loop has no ticker %s: its expiry passes cannot be replaced", name)
		}
		(*(**time.Ticker)(unsafe.Pointer(f.UnsafeAddr()))).Stop()
	}
	return nil
}

// sweeper holds the sessions whose client is offline: the only ones whose
// session can expire.
type sweeper struct {
	mu      sync.Mutex
	offline map[*mqtt.Client]struct{}
}

// sweepHook tells the sweeper which sessions went offline.
type sweepHook struct {
	mqtt.HookBase
	sw *sweeper
}

func (h *sweepHook) ID() string { return "ferry-sweep" }

func (h *sweepHook) Provides(b byte) bool { return b == mqtt.OnDisconnect }

// OnDisconnect (also called by mochi for each session it restores) keeps
// a session that outlives its connection.
func (h *sweepHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	if expire || cl.Net.Inline {
		return
	}
	h.sw.mu.Lock()
	h.sw.offline[cl] = struct{}{}
	h.sw.mu.Unlock()
}

// sweepLoop runs the expiry passes until the server closes.
func (s *Server) sweepLoop() {
	defer close(s.swept)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case now := <-t.C:
			s.sweep(now.Unix())
			s.maybeRelease(now)
		}
	}
}

// sweep does what mochi's clearExpiredClients and clearExpiredInflights
// did, for the clients that need it: an offline session past its expiry
// interval is forgotten, and in-flight messages past their MQTT 5 expiry
// are dropped, unless already sent and not yet acknowledged
// (sessions.clearExpired, which tells the hooks).
func (s *Server) sweep(now int64) {
	maxExpiry := s.broker.Options.Capabilities.MaximumMessageExpiryInterval
	var gone []*mqtt.Client
	s.sw.mu.Lock()
	for cl := range s.sw.offline {
		if cur, ok := s.broker.Clients.Get(cl.ID); !ok || cur != cl {
			delete(s.sw.offline, cl) // taken over by a new connection, or gone
			continue
		}
		if cl.State.Inflight.Len() > 0 {
			s.sess.clearExpired(cl, now, maxExpiry)
		}
		expire := int64(s.broker.Options.Capabilities.MaximumSessionExpiryInterval)
		if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryIntervalFlag {
			expire = int64(cl.Properties.Props.SessionExpiryInterval)
		}
		if stopped := cl.StopTime(); stopped != 0 && stopped+expire < now {
			delete(s.sw.offline, cl)
			gone = append(gone, cl)
		}
	}
	s.sw.mu.Unlock()
	for _, cl := range gone {
		s.hook.OnClientExpired(cl)
		s.sess.OnClientExpired(cl)
		if cur, ok := s.broker.Clients.Get(cl.ID); ok && cur == cl {
			s.broker.Clients.Delete(cl.ID) // [MQTT-4.1.0-2]
		}
	}
	s.conns.Range(func(k, v any) bool {
		cl := k.(*mqtt.Client)
		if !v.(*conn).established.Load() {
			return true // mochi may still be handing it the old session's state
		}
		if cl.State.Inflight.Len() > 0 {
			s.sess.clearExpired(cl, now, maxExpiry)
		}
		s.kick(cl) // deliveries no hook told of ($SYS)
		return true
	})
}
