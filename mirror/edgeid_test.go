package mirror

import (
	"errors"
	"path/filepath"
	"testing"
)

// An edge without --mirror-edge-id is its hostname at the center (not a
// random string nobody recognises), kept once chosen; a hostname that is
// not a valid id falls back to a generated one.
func TestDefaultEdgeIDIsTheHostname(t *testing.T) {
	old := hostname
	t.Cleanup(func() { hostname = old })
	path := filepath.Join(t.TempDir(), "mirror.db")
	id := func(configured string) string {
		t.Helper()
		cp, err := openCheckpoints(path)
		if err != nil {
			t.Fatal(err)
		}
		defer cp.close()
		got, err := cp.edgeID(configured)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	hostname = func() (string, error) { return "gw17", nil }
	if got := id(""); got != "gw17" {
		t.Fatalf("default edge id %q, want the hostname gw17", got)
	}
	hostname = func() (string, error) { return "renamed", nil }
	if got := id(""); got != "gw17" {
		t.Fatalf("edge id after the machine was renamed: %q, want gw17 kept", got)
	}
	if got := id("gw1"); got != "gw1" {
		t.Fatalf("configured id: %q", got)
	}

	for _, h := range []func() (string, error){
		func() (string, error) { return "bad host/name", nil },
		func() (string, error) { return "", errors.New("no hostname") },
	} {
		path = filepath.Join(t.TempDir(), "mirror.db")
		hostname = h
		if got := id(""); got == "" || got == "bad host/name" {
			t.Fatalf("fallback edge id %q", got)
		}
	}
}
