package devices

import (
	"errors"
	"strings"
	"testing"
)

func TestAuthenticate(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true}, "right")
	r.Add(Device{ID: "off", Enabled: false}, "right")
	r.Add(Device{ID: "certonly", Enabled: true, CertCN: "c"}, "")
	for _, tc := range []struct {
		id, pw string
		want   error
	}{
		{"dev1", "right", nil},
		{"dev1", "wrong", ErrBadCredentials},
		{"dev1", "", ErrBadCredentials},
		{"dev1", "right" + strings.Repeat("x", 70), ErrBadCredentials},
		{"nobody", "right", ErrBadCredentials},
		{"certonly", "", ErrBadCredentials},
		{"off", "right", ErrDisabled},
		{"off", "wrong", ErrBadCredentials}, // a disabled device's existence is not revealed without its password
	} {
		before := r.compares.Load()
		err := r.Authenticate(tc.id, tc.pw)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("Authenticate(%q, %q) = %v, want %v", tc.id, tc.pw, err, tc.want)
		}
		// Unknown ids and devices without a password cost a bcrypt run like a
		// wrong password does (the first successful one too; the cache is
		// tested below).
		if tc.want != nil && r.compares.Load() != before+1 {
			t.Errorf("Authenticate(%q, %q) ran bcrypt %d times, want 1", tc.id, tc.pw, r.compares.Load()-before)
		}
	}
}

func TestAuthenticateCacheIsInvalidated(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true}, "pw1")
	r.Add(Device{ID: "dev2", Enabled: true}, "pw1")

	auth := func(id, pw string) (error, int64) {
		t.Helper()
		before := r.compares.Load()
		err := r.Authenticate(id, pw)
		return err, r.compares.Load() - before
	}
	if err, n := auth("dev1", "pw1"); err != nil || n != 1 {
		t.Fatalf("first: %v, %d bcrypt runs", err, n)
	}
	if err, n := auth("dev1", "pw1"); err != nil || n != 0 {
		t.Fatalf("cached: %v, %d bcrypt runs (want 0)", err, n)
	}
	// The cache is per device and per password.
	if err, n := auth("dev2", "pw1"); err != nil || n != 1 {
		t.Fatalf("other device: %v, %d bcrypt runs (want 1)", err, n)
	}
	if err, n := auth("dev1", "pw2"); !errors.Is(err, ErrBadCredentials) || n != 1 {
		t.Fatalf("wrong password with a cached right one: %v, %d", err, n)
	}
	// SetACL keeps credentials.
	r.SetACL("dev1", []string{"a"}, nil)
	if err, n := auth("dev1", "pw1"); err != nil || n != 0 {
		t.Fatalf("after SetACL: %v, %d bcrypt runs (want 0)", err, n)
	}

	// SetPassword: the old password fails at once.
	if err := r.SetPassword("dev1", "pw2"); err != nil {
		t.Fatal(err)
	}
	if err, n := auth("dev1", "pw1"); !errors.Is(err, ErrBadCredentials) || n != 1 {
		t.Fatalf("old password after SetPassword: %v, %d bcrypt runs", err, n)
	}
	if err, _ := auth("dev1", "pw2"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err, n := auth("dev1", "pw2"); err != nil || n != 0 {
		t.Fatalf("new password cached: %v, %d", err, n)
	}

	// Disable: the cached password no longer lets it in.
	r.SetEnabled("dev1", false)
	if err, n := auth("dev1", "pw2"); !errors.Is(err, ErrDisabled) || n != 1 {
		t.Fatalf("after disable: %v, %d bcrypt runs", err, n)
	}
	r.SetEnabled("dev1", true)
	if err, n := auth("dev1", "pw2"); err != nil || n != 1 {
		t.Fatalf("after enable: %v, %d bcrypt runs (the cache was dropped at disable)", err, n)
	}

	// Delete, then add again with another password.
	if err, n := auth("dev1", "pw2"); err != nil || n != 0 {
		t.Fatalf("cached again: %v, %d", err, n)
	}
	r.Delete("dev1")
	if err, n := auth("dev1", "pw2"); !errors.Is(err, ErrBadCredentials) || n != 1 {
		t.Fatalf("after delete: %v, %d", err, n)
	}
	r.Add(Device{ID: "dev1", Enabled: true}, "pw3")
	if err, _ := auth("dev1", "pw2"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("re-added device accepts the deleted one's password: %v", err)
	}
}

func TestAuthenticateCert(t *testing.T) {
	r, _, _ := openTest(t)
	r.Add(Device{ID: "dev1", Enabled: true, CertCN: "dev1.factory"}, "")
	r.Add(Device{ID: "dev2", Enabled: false, CertCN: "dev2.factory"}, "")
	if id, err := r.AuthenticateCert("dev1.factory"); err != nil || id != "dev1" {
		t.Fatalf("AuthenticateCert: %q %v", id, err)
	}
	if _, err := r.AuthenticateCert("dev2.factory"); !errors.Is(err, ErrDisabled) {
		t.Fatalf("disabled: %v", err)
	}
	for _, cn := range []string{"", "dev1", "DEV1.factory", "nobody"} {
		if id, err := r.AuthenticateCert(cn); !errors.Is(err, ErrBadCredentials) || id != "" {
			t.Errorf("AuthenticateCert(%q) = %q, %v", cn, id, err)
		}
	}
	r.Delete("dev1")
	if _, err := r.AuthenticateCert("dev1.factory"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("after delete: %v", err)
	}
}
