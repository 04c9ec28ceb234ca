package devices

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// fakeClock is a settable clock for Options.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testOptions are fast options for tests: the cheapest bcrypt, no periodic
// flush, a fake clock.
func testOptions(clock *fakeClock) Options {
	return Options{BcryptCost: bcrypt.MinCost, PresenceFlushInterval: -1, LockTimeout: 50 * time.Millisecond, Now: clock.Now}
}

// openTest opens a fresh registry in a temporary directory. At the end of the
// test it checks that what the registry showed in memory is what it wrote:
// it closes the registry, reopens the file and compares every device (hash
// included) and every presence (all offline after a reopen).
func openTest(t *testing.T) (*Registry, string, *fakeClock) {
	t.Helper()
	clock := &fakeClock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	path := filepath.Join(t.TempDir(), FileName)
	r, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.isShut.Load() {
			return // the test closed it and checked what it wanted
		}
		devs, err1 := r.List()
		pres, err2 := r.PresenceAll()
		if err := errors.Join(err1, err2, r.Close()); err != nil {
			t.Fatalf("consistency check: %v", err)
		}
		r2, err := Open(path, testOptions(clock))
		if err != nil {
			t.Fatalf("consistency check: reopen: %v", err)
		}
		defer r2.Close()
		devs2, _ := r2.List()
		if !reflect.DeepEqual(devs, devs2) {
			t.Errorf("consistency check: devices in memory\n%+v\nbut on disk\n%+v", devs, devs2)
		}
		pres2, _ := r2.PresenceAll()
		for id, p := range pres {
			p.Online = false
			if !reflect.DeepEqual(p, pres2[id]) {
				t.Errorf("consistency check: presence of %s in memory %+v, on disk %+v", id, p, pres2[id])
			}
		}
		if len(pres) != len(pres2) {
			t.Errorf("consistency check: %d presences in memory, %d on disk", len(pres), len(pres2))
		}
	})
	return r, path, clock
}

func TestAddGetListPersist(t *testing.T) {
	r, path, clock := openTest(t)
	d := Device{ID: "dev1", Enabled: true, CertCN: "dev1.example", RateLimit: 10, Burst: 20,
		ACL: ACL{Publish: []string{"factory/+/{device}/#"}, Subscribe: []string{"cmd/{device}"}}}
	if err := r.Add(d, "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(Device{ID: "dev0"}, ""); err != nil {
		t.Fatal(err)
	}
	got, err := r.Get("dev1")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CreatedAt.Equal(clock.Now()) || got.CertCN != "dev1.example" || got.RateLimit != 10 || got.Burst != 20 || !got.Enabled {
		t.Fatalf("Get: %+v", got)
	}
	if bcrypt.CompareHashAndPassword(got.PasswordHash, []byte("s3cret")) != nil {
		t.Fatal("stored hash is not the password's bcrypt hash")
	}
	if cost, _ := bcrypt.Cost(got.PasswordHash); cost != bcrypt.MinCost {
		t.Fatalf("hash cost %d, want Options.BcryptCost %d", cost, bcrypt.MinCost)
	}
	if !reflect.DeepEqual(got.ACL, d.ACL) {
		t.Fatalf("ACL %+v, want %+v", got.ACL, d.ACL)
	}
	// Get returns a copy.
	got.ACL.Publish[0] = "#"
	if again, _ := r.Get("dev1"); again.ACL.Publish[0] != "factory/+/{device}/#" {
		t.Fatal("Get shares its slices with the registry")
	}
	list, _ := r.List()
	if len(list) != 2 || list[0].ID != "dev0" || list[1].ID != "dev1" || list[0].Enabled {
		t.Fatalf("List: %+v", list)
	}
	b, _ := json.Marshal(list)
	if strings.Contains(string(b), "$2a$") || strings.Contains(strings.ToLower(string(b)), "hash") {
		t.Fatalf("the password hash leaks into JSON: %s", b)
	}

	want, _ := r.Get("dev1")
	r.Close()
	r2, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if got2, err := r2.Get("dev1"); err != nil || !reflect.DeepEqual(got2, want) {
		t.Fatalf("after reopen: %+v %v, want %+v", got2, err, want)
	}
	if err := r2.Authenticate("dev1", "s3cret"); err != nil {
		t.Fatalf("authenticate after reopen: %v", err)
	}
}

func TestAddRefuses(t *testing.T) {
	r, _, _ := openTest(t)
	if err := r.Add(Device{ID: "dev1", CertCN: "cn1"}, "pw"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		d    Device
		pw   string
		want error
	}{
		{"taken id", Device{ID: "dev1"}, "pw", ErrExists},
		{"taken CN", Device{ID: "dev2", CertCN: "cn1"}, "pw", ErrExists},
		{"empty id", Device{ID: ""}, "pw", ErrInvalidID},
		// An id is substituted for {device} in ACL filters: none that
		// would widen one, or reach $ topics, can be registered.
		{"'+' in the id", Device{ID: "dev+"}, "pw", ErrInvalidID},
		{"'#' as the id", Device{ID: "#"}, "pw", ErrInvalidID},
		{"'/' in the id", Device{ID: "dev3/x"}, "pw", ErrInvalidID},
		{"leading '$'", Device{ID: "$dev3"}, "pw", ErrInvalidID},
		{"NUL in the id", Device{ID: "dev\x003"}, "pw", ErrInvalidID},
		{"id not UTF-8", Device{ID: "dev\xff3"}, "pw", ErrInvalidID},
		{"bad filter", Device{ID: "dev3", ACL: ACL{Publish: []string{"a/#/b"}}}, "", ErrInvalidFilter},
		{"token inside a level", Device{ID: "dev3", ACL: ACL{Subscribe: []string{"a/x{device}"}}}, "", ErrInvalidFilter},
		{"negative rate", Device{ID: "dev3", RateLimit: -1}, "", ErrInvalidDevice},
		{"negative burst", Device{ID: "dev3", Burst: -1}, "", ErrInvalidDevice},
		{"password over 72 bytes", Device{ID: "dev3"}, strings.Repeat("p", 73), ErrInvalidPassword},
	} {
		if err := r.Add(tc.d, tc.pw); !errors.Is(err, tc.want) {
			t.Errorf("%s: Add = %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := r.Get("dev3"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused Add stored dev3: %v", err)
	}
	if _, err := r.Get("dev2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused Add stored dev2: %v", err)
	}
}

func TestValidateID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"dev-1", true}, {"{device}", true}, {"ü", true}, {"a$", true}, {strings.Repeat("x", 128), true},
		{"", false}, {strings.Repeat("x", 129), false}, {"a/b", false}, {"a+b", false}, {"+", false}, {"a#", false},
		{"a\x00b", false}, {"$SYS", false}, {"$", false}, {"\xff", false},
	} {
		err := ValidateID(tc.id)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalidID)) {
			t.Errorf("ValidateID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
	}
}

func TestChangesAndDelete(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true, CertCN: "cn1"}, "pw")
	if err := r.SetEnabled("dev1", false); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.Get("dev1"); d.Enabled {
		t.Fatal("SetEnabled(false) did not disable")
	}
	if err := r.SetACL("dev1", []string{"a/{device}"}, []string{"b/#"}); err != nil {
		t.Fatal(err)
	}
	if d, _ := r.Get("dev1"); !reflect.DeepEqual(d.ACL, ACL{Publish: []string{"a/{device}"}, Subscribe: []string{"b/#"}}) || d.Enabled {
		t.Fatalf("after SetACL: %+v", d)
	}
	if err := r.SetACL("dev1", []string{"a/+x"}, nil); !errors.Is(err, ErrInvalidFilter) {
		t.Fatalf("SetACL with a bad filter: %v", err)
	}
	for _, err := range []error{
		r.SetEnabled("nope", true), r.SetPassword("nope", "x"), r.SetACL("nope", nil, nil), r.Delete("nope"),
		func() error { _, err := r.Get("nope"); return err }(),
		func() error { _, err := r.Presence("nope"); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown device: %v, want ErrNotFound", err)
		}
	}
	if err := r.Delete("dev1"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get("dev1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
	// The id and the CN are free again.
	if err := r.Add(Device{ID: "dev2", CertCN: "cn1"}, ""); err != nil {
		t.Fatalf("CN of a deleted device: %v", err)
	}
	if err := r.Add(Device{ID: "dev1"}, ""); err != nil {
		t.Fatalf("id of a deleted device: %v", err)
	}
}

func TestOpenLockedAndClosed(t *testing.T) {
	r, path, clock := openTest(t)
	if _, err := Open(path, testOptions(clock)); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, err := range []error{
		r.Add(Device{ID: "x"}, ""), r.SetEnabled("x", true), r.Delete("x"), r.Authenticate("x", "y"),
		func() error { _, err := r.List(); return err }(),
	} {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("after Close: %v, want ErrClosed", err)
		}
	}
	r2, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	r2.Close()
}

func TestDefaultOptions(t *testing.T) {
	r, err := Open(filepath.Join(t.TempDir(), FileName), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.opts.BcryptCost != bcrypt.DefaultCost || r.opts.PresenceFlushInterval != 5*time.Second || r.opts.LockTimeout != time.Second {
		t.Fatalf("zero Options became %+v", r.opts)
	}
	if _, err := Open(filepath.Join(t.TempDir(), FileName), Options{BcryptCost: 99}); err == nil {
		t.Fatal("Open accepted bcrypt cost 99")
	}
}

// TestConcurrentUse runs the hot-path calls against changes; -race checks it.
func TestConcurrentUse(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true, RateLimit: 1000, Burst: 10, ACL: ACL{Publish: []string{"t/{device}/#"}, Subscribe: []string{"c/#"}}}, "pw")
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r.CountIn("dev1", 1, 10)
				r.CanPublish("dev1", "t/dev1/x")
				r.CanSubscribe("dev1", "c/+")
				r.Allow("dev1")
				if i%50 == 0 {
					r.Authenticate("dev1", "pw")
					r.Connected("dev1", "10.0.0.1:1", time.Now())
					r.Disconnected("dev1", time.Now())
				}
			}
		}()
	}
	for i := 0; i < 20; i++ {
		r.SetACL("dev1", []string{"t/{device}/#"}, []string{"c/#"})
		r.SetPassword("dev1", "pw")
		r.flushPresence()
	}
	close(stop)
	wg.Wait()
	if !r.CanPublish("dev1", "t/dev1/x") || r.Authenticate("dev1", "pw") != nil {
		t.Fatal("device not usable after concurrent changes")
	}
}
