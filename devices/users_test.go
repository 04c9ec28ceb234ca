package devices

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/xdg-go/scram"
)

// scramLogin runs a whole SCRAM conversation, the client's side with
// xdg-go/scram's client and the server's against the stored credential, the
// way the Kafka listener does.
func scramLogin(t *testing.T, r *Registry, mech, user, password string) bool {
	t.Helper()
	h, _ := scramHash(mech)
	srv, err := scram.HashGeneratorFcn(h).NewServer(func(name string) (scram.StoredCredentials, error) {
		c, err := r.UserSCRAM(mech, name)
		if err != nil {
			return scram.StoredCredentials{}, err
		}
		return scram.StoredCredentials{KeyFactors: scram.KeyFactors{Salt: string(c.Salt), Iters: c.Iterations}, StoredKey: c.StoredKey, ServerKey: c.ServerKey}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := scram.HashGeneratorFcn(h).NewClientUnprepped(user, password, "")
	if err != nil {
		t.Fatal(err)
	}
	cc, sc := cl.NewConversation(), srv.NewConversation()
	msg, err := cc.Step("")
	for err == nil && !sc.Done() {
		if msg, err = sc.Step(msg); err != nil {
			break
		}
		msg, err = cc.Step(msg)
	}
	return err == nil && sc.Valid()
}

func TestUsers(t *testing.T) {
	r, path, clock := openTest(t)
	if err := r.AddUser("alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddUser("alice", "other"); !errors.Is(err, ErrUserExists) {
		t.Fatalf("second AddUser: %v", err)
	}
	for _, bad := range []string{"", "*", "a\x00b", "a\nb", string([]byte{0xff})} {
		if err := r.AddUser(bad, "pw"); !errors.Is(err, ErrInvalidUser) {
			t.Errorf("AddUser(%q): %v", bad, err)
		}
	}
	if err := r.AddUser("bob", ""); !errors.Is(err, ErrInvalidPassword) {
		t.Errorf("empty password: %v", err)
	}
	u, err := r.GetUser("alice")
	if err != nil {
		t.Fatal(err)
	}
	want := User{Name: "alice", Mechanisms: []string{"PLAIN", SCRAMSHA256, SCRAMSHA512}, CreatedAt: clock.Now()}
	if !reflect.DeepEqual(u, want) {
		t.Fatalf("GetUser = %+v, want %+v", u, want)
	}
	for _, m := range []string{SCRAMSHA256, SCRAMSHA512} {
		c, err := r.UserSCRAM(m, "alice")
		if err != nil || c.Iterations < MinSCRAMIterations || len(c.Salt) == 0 {
			t.Fatalf("UserSCRAM(%s) = %+v, %v", m, c, err)
		}
		if !scramLogin(t, r, m, "alice", "s3cret") {
			t.Errorf("%s: the right password failed", m)
		}
		if scramLogin(t, r, m, "alice", "wrong") {
			t.Errorf("%s: a wrong password passed", m)
		}
	}
	if err := r.AuthenticateUser("alice", "s3cret"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range [][2]string{{"alice", "wrong"}, {"nobody", "s3cret"}, {"alice", ""}} {
		if err := r.AuthenticateUser(tc[0], tc[1]); !errors.Is(err, ErrBadCredentials) {
			t.Errorf("AuthenticateUser(%q, %q) = %v", tc[0], tc[1], err)
		}
	}
	if err := r.SetUserPassword("alice", "n3w"); err != nil {
		t.Fatal(err)
	}
	if err := r.AuthenticateUser("alice", "s3cret"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("old password after SetUserPassword (cache not dropped?): %v", err)
	}
	if !scramLogin(t, r, SCRAMSHA256, "alice", "n3w") || scramLogin(t, r, SCRAMSHA256, "alice", "s3cret") {
		t.Fatal("SCRAM after SetUserPassword")
	}
	if err := r.SetUserPassword("nobody", "x"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("SetUserPassword unknown: %v", err)
	}
	if err := r.AddUser("carol", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteUser("carol"); err != nil {
		t.Fatal(err)
	}
	if err := r.DeleteUser("carol"); !errors.Is(err, ErrUserNotFound) {
		t.Fatalf("second DeleteUser: %v", err)
	}
	if _, err := r.UserSCRAM(SCRAMSHA256, "carol"); !errors.Is(err, ErrBadCredentials) {
		t.Fatalf("deleted user's SCRAM: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	users, err := r2.Users()
	if err != nil || len(users) != 1 || users[0].Name != "alice" {
		t.Fatalf("after reopen: %+v, %v", users, err)
	}
	if err := r2.AuthenticateUser("alice", "n3w"); err != nil || !scramLogin(t, r2, SCRAMSHA512, "alice", "n3w") {
		t.Fatalf("after reopen: %v", err)
	}
}

// TestUserSecretsAreNotStored checks that the file holds no password.
func TestUserSecretsAreNotStored(t *testing.T) {
	r, path, _ := openTest(t)
	const pw = "correct-horse-battery-staple"
	if err := r.AddUser("alice", pw); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	raw := readFile(t, path)
	if containsBytes(raw, []byte(pw)) {
		t.Fatal("the registry file contains the password")
	}
}

func TestSCRAMIterationsFloor(t *testing.T) {
	opts := testOptions(&fakeClock{})
	opts.SCRAMIterations = 1000
	if _, err := Open(filepath.Join(t.TempDir(), FileName), opts); err == nil {
		t.Fatal("Open accepted 1000 SCRAM iterations")
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func containsBytes(b, sub []byte) bool { return bytes.Contains(b, sub) }

// TestSCRAMDecoy: an unknown user's decoy credential cannot tell it from a
// known one: its salt is the same at every attempt and after a restart
// (a secret kept in the file keys it), differs per user and mechanism, and
// its iteration count is the one real users get.
func TestSCRAMDecoy(t *testing.T) {
	opts := testOptions(&fakeClock{})
	opts.SCRAMIterations = 8192
	path := filepath.Join(t.TempDir(), FileName)
	r, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddUser("alice", "s3cret-pw"); err != nil {
		t.Fatal(err)
	}
	real, _ := r.UserSCRAM(SCRAMSHA256, "alice")
	d1 := r.SCRAMDecoy(SCRAMSHA256, "mallory")
	if again := r.SCRAMDecoy(SCRAMSHA256, "mallory"); !bytes.Equal(again.Salt, d1.Salt) {
		t.Error("the decoy salt changed between two attempts")
	}
	if d1.Iterations != real.Iterations || len(d1.Salt) != len(real.Salt) || len(d1.StoredKey) != len(real.StoredKey) {
		t.Errorf("decoy %d iterations, %d-byte salt, %d-byte key; a real user %d, %d, %d",
			d1.Iterations, len(d1.Salt), len(d1.StoredKey), real.Iterations, len(real.Salt), len(real.StoredKey))
	}
	if other := r.SCRAMDecoy(SCRAMSHA256, "eve"); bytes.Equal(other.Salt, d1.Salt) {
		t.Error("two unknown users share a decoy salt")
	}
	if other := r.SCRAMDecoy(SCRAMSHA512, "mallory"); bytes.Equal(other.Salt, d1.Salt) {
		t.Error("two mechanisms share a decoy salt")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if after := r.SCRAMDecoy(SCRAMSHA256, "mallory"); !bytes.Equal(after.Salt, d1.Salt) {
		t.Error("the decoy salt changed across a restart: an unknown user shows")
	}
}
