package devices

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// stored reads device id's presence as written in the file.
func stored(t *testing.T, r *Registry, id string) (p Presence, ok bool) {
	t.Helper()
	err := r.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketPresence).Get([]byte(id))
		if v == nil {
			return nil
		}
		ok = true
		return json.Unmarshal(v, &p)
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, ok
}

func TestPresence(t *testing.T) {
	r, _, clock := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true}, "")
	t0 := clock.Now()
	if p, _ := r.Presence("dev1"); p.Online || !p.LastSeen.IsZero() || p.MessagesIn != 0 {
		t.Fatalf("new device: %+v", p)
	}
	r.Connected("dev1", "10.0.0.7:5000", t0)
	r.CountIn("dev1", 3, 300)
	r.CountIn("dev1", 1, 50)
	p, _ := r.Presence("dev1")
	want := Presence{Online: true, LastSeen: t0, RemoteAddr: "10.0.0.7:5000", MessagesIn: 4, BytesIn: 350, ConnectedAt: t0}
	if p != want {
		t.Fatalf("Presence = %+v, want %+v", p, want)
	}
	// Session takeover: the new connection arrives before the old one's
	// disconnect; the device stays online and shows the new address.
	t1 := t0.Add(time.Minute)
	r.Connected("dev1", "10.0.0.8:6000", t1)
	r.Disconnected("dev1", t1.Add(time.Millisecond))
	if p, _ := r.Presence("dev1"); !p.Online || p.RemoteAddr != "10.0.0.8:6000" || !p.ConnectedAt.Equal(t1) || !p.LastSeen.Equal(t1.Add(time.Millisecond)) {
		t.Fatalf("after takeover: %+v", p)
	}
	r.Disconnected("dev1", t1.Add(2*time.Millisecond))
	r.Disconnected("dev1", t1.Add(3*time.Millisecond)) // one too many: no negative count
	if p, _ := r.Presence("dev1"); p.Online {
		t.Fatalf("after the last disconnect: %+v", p)
	}
	r.Connected("dev1", "10.0.0.8:6001", t1.Add(4*time.Millisecond))
	if p, _ := r.Presence("dev1"); !p.Online {
		t.Fatalf("reconnected: %+v", p)
	}
	// LastSeen never goes back.
	r.Disconnected("dev1", t0)
	if p, _ := r.Presence("dev1"); !p.LastSeen.Equal(t1.Add(4 * time.Millisecond)) {
		t.Fatalf("LastSeen went back: %+v", p)
	}
	// Unknown ids are ignored.
	r.Connected("nobody", "x", t0)
	r.CountIn("nobody", 1, 1)
	if all, _ := r.PresenceAll(); len(all) != 1 || all["dev1"].MessagesIn != 4 {
		t.Fatalf("PresenceAll: %+v", all)
	}
}

func TestCountInWritesNothingUntilFlush(t *testing.T) {
	r, _, _ := openTest(t)
	for _, id := range []string{"a", "b", "c"} {
		r.Add(Device{ID: id, Enabled: true}, "")
	}
	stats := r.db.Stats()
	writes := stats.TxStats.GetWrite()
	for i := 0; i < 10000; i++ {
		r.CountIn("a", 1, 10)
		r.CountIn("b", 1, 20)
	}
	r.Connected("c", "x", time.Now())
	stats = r.db.Stats()
	if got := stats.TxStats.GetWrite(); got != writes {
		t.Fatalf("CountIn/Connected wrote %d pages to the file", got-writes)
	}
	if p, _ := stored(t, r, "a"); p.MessagesIn != 0 {
		t.Fatalf("stored before flush: %+v", p)
	}
	if n, err := r.flushPresence(); err != nil || n != 3 {
		t.Fatalf("flush wrote %d presences (%v), want 3 in one transaction", n, err)
	}
	stats = r.db.Stats()
	if stats.TxStats.GetWrite() == writes {
		t.Fatal("test premise: a flush should count as written pages")
	}
	if p, _ := stored(t, r, "b"); p.MessagesIn != 10000 || p.BytesIn != 200000 {
		t.Fatalf("stored after flush: %+v", p)
	}
	if p, _ := stored(t, r, "c"); !p.Online {
		t.Fatalf("stored after flush: %+v", p)
	}
	// Nothing changed since: nothing to write.
	if n, err := r.flushPresence(); err != nil || n != 0 {
		t.Fatalf("second flush wrote %d (%v)", n, err)
	}
	r.CountIn("a", 1, 1)
	if n, _ := r.flushPresence(); n != 1 {
		t.Fatalf("flush after one CountIn wrote %d", n)
	}
}

func TestPresenceFlusher(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	opts := testOptions(clock)
	opts.PresenceFlushInterval = time.Millisecond
	flushed := make(chan int, 100)
	opts.afterFlush = func(n int, err error) {
		if err != nil {
			t.Error(err)
		}
		select {
		case flushed <- n:
		default:
		}
	}
	r, err := Open(filepath.Join(t.TempDir(), FileName), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.Add(Device{ID: "dev1", Enabled: true}, "")
	r.CountIn("dev1", 5, 500)
	deadline := time.After(10 * time.Second)
	for {
		select {
		case n := <-flushed:
			if n == 0 {
				continue
			}
			if p, _ := stored(t, r, "dev1"); p.MessagesIn != 5 || p.BytesIn != 500 {
				t.Fatalf("flusher wrote %+v", p)
			}
			return
		case <-deadline:
			t.Fatal("the flusher wrote nothing within 10 s")
		}
	}
}

func TestPresenceAcrossCloseAndCrash(t *testing.T) {
	r, path, clock := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true}, "")
	t0 := clock.Now()
	r.Connected("dev1", "10.0.0.7:5000", t0)
	r.CountIn("dev1", 7, 70)
	r.flushPresence()

	// A crash now leaves the file saying "online": copy it as it is.
	crashed := filepath.Join(t.TempDir(), FileName)
	copyFile(t, path, crashed)
	if p, _ := stored(t, r, "dev1"); !p.Online {
		t.Fatal("test premise: the flushed presence should say online")
	}
	r2, err := Open(crashed, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	p, _ := r2.Presence("dev1")
	if p.Online || p.MessagesIn != 7 || !p.LastSeen.Equal(t0) || p.RemoteAddr != "10.0.0.7:5000" {
		t.Fatalf("after a crash: %+v (want offline, counters and last seen kept)", p)
	}
	if sp, _ := stored(t, r2, "dev1"); sp.Online {
		t.Fatal("Open did not write the device offline")
	}
	r2.Close()

	// Counted after the last flush: written by Close.
	r.CountIn("dev1", 3, 30)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r3, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if p, _ := r3.Presence("dev1"); p.Online || p.MessagesIn != 10 || p.BytesIn != 100 {
		t.Fatalf("after Close and reopen: %+v", p)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
