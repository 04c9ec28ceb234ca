package scenario

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// link is a gateway's way to the center: a toxiproxy proxy, embedded in
// the runner, between the edge's mirror and the center's receiver.
// "Upstream" is edge → center.
type link struct {
	name  string
	proxy *toxiproxy.Proxy

	mu     sync.Mutex
	down   bool
	toxics []string
}

// quietToxics silences toxiproxy's toxics, which log to zerolog's global
// logger (the only user of zerolog in the process) at trace level.
var quietToxics sync.Once

func newLink(name, upstream string) (*link, error) {
	quietToxics.Do(func() { zerolog.SetGlobalLevel(zerolog.WarnLevel) })
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	p := toxiproxy.NewProxy(srv, name, "127.0.0.1:0", upstream)
	if err := p.Start(); err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	return &link{name: name, proxy: p}, nil
}

// addr is where the edge dials.
func (l *link) addr() string { return l.proxy.Listen }

// setDown stops the proxy (its connections are closed, new ones refused)
// or starts it again on the same address.
func (l *link) setDown(down bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if down == l.down {
		return nil
	}
	if down {
		l.proxy.Stop()
	} else if err := l.proxy.Start(); err != nil {
		return fmt.Errorf("link %s: %w", l.name, err)
	}
	l.down = down
	return nil
}

func (l *link) isDown() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.down
}

// toxic adds a toxic, replacing one of the same name.
func (l *link) toxic(name, typ, stream string, attrs map[string]any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.toxics, name) {
		if err := l.proxy.Toxics.RemoveToxic(context.Background(), name); err != nil {
			return err
		}
		l.toxics = slices.DeleteFunc(l.toxics, func(n string) bool { return n == name })
	}
	js, err := json.Marshal(map[string]any{"name": name, "type": typ, "stream": stream, "attributes": attrs})
	if err != nil {
		return err
	}
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(string(js))); err != nil {
		return fmt.Errorf("link %s: toxic %s: %w", l.name, name, err)
	}
	l.toxics = append(l.toxics, name)
	return nil
}

// remove removes the named toxics that are there.
func (l *link) remove(names ...string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		if !slices.Contains(l.toxics, n) {
			continue
		}
		if err := l.proxy.Toxics.RemoveToxic(context.Background(), n); err != nil {
			return fmt.Errorf("link %s: removing %s: %w", l.name, n, err)
		}
		l.toxics = slices.DeleteFunc(l.toxics, func(x string) bool { return x == n })
	}
	return nil
}

// state describes the link in a word or two: "up", "down", "up 64KiB/s".
func (l *link) state() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return "down"
	}
	if len(l.toxics) == 0 {
		return "up"
	}
	return "up+" + strings.Join(l.toxics, "+")
}

// heal removes every toxic and brings the link up.
func (l *link) heal() error {
	l.mu.Lock()
	names := slices.Clone(l.toxics)
	l.mu.Unlock()
	if err := l.remove(names...); err != nil {
		return err
	}
	return l.setDown(false)
}

func (l *link) close() { l.proxy.Stop() }
