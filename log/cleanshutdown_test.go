package log

import (
	"testing"
)

// A node's log knows whether its previous run ended with Close: a new
// log and a crashed one (no Close) say unclean, a closed one clean, and
// an offline tool's open and close (no marker option) changes nothing.
func TestCleanShutdownMarker(t *testing.T) {
	dir := t.TempDir()
	open := func(node bool) *Log {
		t.Helper()
		l, err := Open(Options{Dir: dir, RetentionCheckInterval: -1, CleanShutdownMarker: node})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	l := open(true)
	if l.CleanShutdown() {
		t.Fatal("a new log says its previous run shut down cleanly")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// An offline tool in between neither takes nor writes the marker.
	if err := open(false).Close(); err != nil {
		t.Fatal(err)
	}
	l = open(true)
	if !l.CleanShutdown() {
		t.Fatal("after a clean Close the next run says unclean")
	}
	// This run crashes: it never closes. Release the lock as a dead
	// process would, without Close's work.
	l.db.Close()
	if err := open(false).Close(); err != nil { // an offline tool after the crash
		t.Fatal(err)
	}
	l = open(true)
	defer l.Close()
	if l.CleanShutdown() {
		t.Fatal("after a crash (and an offline tool) the next run says clean")
	}
}
