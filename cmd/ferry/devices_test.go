package main

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ferry/devices"
	"ferry/edge/adminapi"
)

// openDevices opens the registry the commands wrote, for checks the output
// cannot show (the stored password).
func openDevices(t *testing.T, dir string, now time.Time) *devices.Registry {
	t.Helper()
	r, err := devices.Open(filepath.Join(dir, devices.FileName), devices.Options{
		PresenceFlushInterval: -1, BcryptCost: bcrypt.MinCost, Now: func() time.Time { return now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fastHashes makes the commands hash with bcrypt's lowest cost.
func fastHashes(t *testing.T) {
	old := devicesBcryptCost
	devicesBcryptCost = bcrypt.MinCost
	t.Cleanup(func() { devicesBcryptCost = old })
}

func withStdin(t *testing.T, s string) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(s)
	t.Cleanup(func() { stdin = old })
}

func TestDevicesHelp(t *testing.T) {
	for _, sub := range []string{"add", "list", "show", "enable", "disable", "delete", "passwd"} {
		code, out, _ := ferry(t, "devices", sub, "--help")
		if code != 0 || !strings.Contains(out, "Example:\n  ferry devices "+sub) && !strings.Contains(out, "| ferry devices "+sub) || !strings.Contains(out, "--data-dir") {
			t.Errorf("devices %s --help: exit %d\n%s", sub, code, out)
		}
	}
	if code, out, _ := ferry(t, "--help"); code != 0 || !strings.Contains(out, "devices") {
		t.Fatalf("ferry --help does not list devices:\n%s", out)
	}
	for _, sub := range []string{"list", "show"} {
		if _, out, _ := ferry(t, "devices", sub, "--help"); !strings.Contains(out, "--json") {
			t.Errorf("devices %s --help lacks --json", sub)
		}
	}
}

func TestDevicesCommands(t *testing.T) {
	fastHashes(t)
	dir := t.TempDir()
	code, out, errOut := ferry(t, "devices", "add", "dev1", "--password", "pw-one",
		"--publish", "factory/+/{device}/#", "--publish", "status/{device}", "--subscribe", "cmd/{device}/#",
		"--rate", "10", "--burst", "20", "--cert-cn", "dev1.factory", "--data-dir", dir, "--create-data-dir")
	if code != 0 || out != "added device dev1\n" {
		t.Fatalf("add: %d %q %q", code, out, errOut)
	}
	withStdin(t, "pw two\nignored second line\n")
	if code, _, errOut := ferry(t, "devices", "add", "dev2", "--password-stdin", "--data-dir", dir); code != 0 {
		t.Fatalf("add --password-stdin: %d %q", code, errOut)
	}
	if code, _, errOut := ferry(t, "devices", "add", "cam", "--cert-cn", "cam.factory", "--data-dir", dir); code != 0 {
		t.Fatalf("add certificate-only: %d %q", code, errOut)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"devices", "add", "dev1", "--password", "x", "--data-dir", dir}, 1, "already exists"},
		{[]string{"devices", "add", "dev9", "--password", "x", "--cert-cn", "dev1.factory", "--data-dir", dir}, 1, "already exists"},
		{[]string{"devices", "add", "a/b", "--password", "x", "--data-dir", dir}, 1, "invalid device id"},
		{[]string{"devices", "add", "$dev", "--password", "x", "--data-dir", dir}, 1, "invalid device id"},
		{[]string{"devices", "add", "dev9", "--password", "x", "--publish", "a/#/b", "--data-dir", dir}, 1, "invalid topic filter"},
		{[]string{"devices", "add", "dev9", "--password", "x", "--rate", "-1", "--data-dir", dir}, 1, "invalid device"},
		{[]string{"devices", "add", "dev9", "--data-dir", dir}, 2, "--password-stdin"},
		{[]string{"devices", "add", "dev9", "--password", "x", "--password-stdin", "--data-dir", dir}, 2, "exclude each other"},
		{[]string{"devices", "add", "--password", "x", "--data-dir", dir}, 2, "want 1 argument"},
		{[]string{"devices", "show", "nope", "--data-dir", dir}, 1, "device not found"},
		{[]string{"devices", "disable", "nope", "--data-dir", dir}, 1, "device not found"},
		{[]string{"devices", "delete", "nope", "--data-dir", dir}, 1, "device not found"},
		{[]string{"devices", "passwd", "nope", "--password", "x", "--data-dir", dir}, 1, "device not found"},
		{[]string{"devices", "passwd", "dev1", "--data-dir", dir}, 2, "--password"},
		{[]string{"devices", "list", "extra", "--data-dir", dir}, 2, "want 0 argument"},
		{[]string{"devices", "frobnicate"}, 2, "unknown command"},
	} {
		code, out, errOut := ferry(t, tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("ferry %v: exit %d (want %d), output %q lacks %q", tc.args, code, tc.code, out+errOut, tc.want)
		}
	}
	if _, _, errOut := ferry(t, "devices", "show", "dev9", "--data-dir", dir); !strings.Contains(errOut, "not found") {
		t.Fatalf("a refused add stored dev9: %q", errOut)
	}

	// What a running node would have recorded: a connection and messages.
	seen := time.Date(2025, 6, 1, 8, 30, 0, 0, time.UTC)
	r := openDevices(t, dir, seen)
	r.Connected("dev1", "10.1.2.3:40000", seen)
	r.CountIn("dev1", 42, 4200)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	code, out, _ = ferry(t, "devices", "list", "--json", "--data-dir", dir)
	var list []adminapi.DeviceView
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 3 {
		t.Fatalf("list --json: %d %q", code, out)
	}
	if list[0].ID != "cam" || list[1].ID != "dev1" || list[2].ID != "dev2" || list[0].HasPassword || !list[1].HasPassword {
		t.Fatalf("list --json: %+v", list)
	}
	if p := list[1]; p.Online || p.MessagesIn != 42 || p.BytesIn != 4200 || p.LastSeen == nil || !p.LastSeen.Equal(seen) {
		t.Fatalf("list --json presence of dev1: %+v", p)
	}
	if strings.Contains(out, "$2a$") || strings.Contains(out, "pw-one") || strings.Contains(out, "password_hash") {
		t.Fatalf("list --json shows a password or its hash: %s", out)
	}
	code, out, _ = ferry(t, "devices", "list", "--data-dir", dir)
	if code != 0 || !regexp.MustCompile(`(?m)^dev1\s+true\s+false\s+2025-06-01T08:30:00Z\s+42$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^dev2\s+true\s+false\s+never\s+0$`).MatchString(out) || !strings.HasPrefix(out, "ID") {
		t.Fatalf("list:\n%s", out)
	}

	code, out, _ = ferry(t, "devices", "show", "dev1", "--json", "--data-dir", dir)
	var v adminapi.DeviceView
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil {
		t.Fatalf("show --json: %d %q", code, out)
	}
	if v.CertCN != "dev1.factory" || v.RateLimit != 10 || v.Burst != 20 || !v.Enabled ||
		strings.Join(v.ACL.Publish, " ") != "factory/+/{device}/# status/{device}" || strings.Join(v.ACL.Subscribe, " ") != "cmd/{device}/#" {
		t.Fatalf("show --json: %+v", v)
	}
	code, out, _ = ferry(t, "devices", "show", "dev1", "--data-dir", dir)
	for _, want := range []string{"dev1.factory", "factory/+/{device}/# status/{device}", "10 msg/s, burst 20", "10.1.2.3:40000", "4200"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}

	// The passwords were stored as given: stdin's first line, without its newline.
	r = openDevices(t, dir, seen)
	for id, pw := range map[string]string{"dev1": "pw-one", "dev2": "pw two"} {
		if err := r.Authenticate(id, pw); err != nil {
			t.Errorf("Authenticate(%s) with the password given to add: %v", id, err)
		}
	}
	if id, err := r.AuthenticateCert("cam.factory"); err != nil || id != "cam" {
		t.Errorf("AuthenticateCert: %q %v", id, err)
	}
	r.Close()

	// disable, enable, passwd, delete.
	if code, out, _ := ferry(t, "devices", "disable", "dev1", "--data-dir", dir); code != 0 || out != "disabled device dev1\n" {
		t.Fatalf("disable: %d %q", code, out)
	}
	if _, out, _ := ferry(t, "devices", "show", "dev1", "--json", "--data-dir", dir); !strings.Contains(out, `"enabled":false`) {
		t.Fatalf("after disable: %s", out)
	}
	if code, _, _ := ferry(t, "devices", "enable", "dev1", "--data-dir", dir); code != 0 {
		t.Fatal("enable failed")
	}
	withStdin(t, "pw-new\n")
	if code, out, errOut := ferry(t, "devices", "passwd", "dev1", "--password-stdin", "--data-dir", dir); code != 0 || !strings.Contains(out, "password of device dev1 changed") {
		t.Fatalf("passwd: %d %q %q", code, out, errOut)
	}
	r = openDevices(t, dir, seen)
	if d, _ := r.Get("dev1"); !d.Enabled {
		t.Error("enable did not enable dev1")
	}
	if err := r.Authenticate("dev1", "pw-one"); !errors.Is(err, devices.ErrBadCredentials) {
		t.Errorf("old password after passwd: %v", err)
	}
	if err := r.Authenticate("dev1", "pw-new"); err != nil {
		t.Errorf("new password after passwd: %v", err)
	}
	r.Close()
	for _, id := range []string{"dev1", "dev2", "cam"} {
		if code, out, _ := ferry(t, "devices", "delete", id, "--data-dir", dir); code != 0 || out != "deleted device "+id+"\n" {
			t.Fatalf("delete %s: %d %q", id, code, out)
		}
	}
	if code, out, _ := ferry(t, "devices", "list", "--json", "--data-dir", dir); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("after delete: %q", out)
	}
}

func TestDevicesRefusesAHeldRegistry(t *testing.T) {
	dir := t.TempDir()
	r := openDevices(t, dir, time.Now()) // as a running node holds it
	defer r.Close()
	for _, args := range [][]string{
		{"devices", "list", "--data-dir", dir},
		{"devices", "add", "dev1", "--password", "x", "--data-dir", dir},
	} {
		code, _, errOut := ferry(t, args...)
		if code != 1 || !strings.Contains(errOut, "in use by a running ferry") {
			t.Errorf("ferry %v: exit %d, %q", args, code, errOut)
		}
	}
	if _, err := r.Get("dev1"); !errors.Is(err, devices.ErrNotFound) {
		t.Fatalf("the refused add changed the registry: %v", err)
	}
}
