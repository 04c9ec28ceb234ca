package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"ferry/devices"
)

func scramCred(b byte) *devices.SCRAMCredential {
	return &devices.SCRAMCredential{Salt: []byte{b, 1}, Iterations: 4096, StoredKey: []byte{b, 2}, ServerKey: []byte{b, 3}}
}

func acl(principal, topic, op string) devices.KafkaACL {
	return devices.KafkaACL{Principal: principal, ResourceType: "TOPIC", ResourceName: topic, PatternType: "LITERAL", Operation: op, Permission: "ALLOW"}
}

func securityRecords() []Record {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	alice := &devices.UserSecrets{Name: "alice", CreatedAt: t0, PlainHash: []byte("$2a$bcrypt-alice"),
		SCRAM: map[string]devices.SCRAMCredential{devices.SCRAMSHA256: *scramCred(1)}}
	alice2 := &devices.UserSecrets{Name: "alice", CreatedAt: t0.Add(time.Hour), PlainHash: []byte("$2a$bcrypt-alice-2")}
	sec := func(c SecurityChange) *SecurityChange { return &c }
	return []Record{
		{Op: OpPutUser, Security: sec(SecurityChange{User: alice})},                                                                                                                                                // 0
		{Op: OpPutUser, Security: sec(SecurityChange{User: alice})},                                                                                                                                                // 1 exists
		{Op: OpPutUser, Security: sec(SecurityChange{User: alice2, Replace: true})},                                                                                                                                // 2 new password
		{Op: OpPutUser, Security: sec(SecurityChange{User: &devices.UserSecrets{Name: "ghost", PlainHash: []byte("x")}, Replace: true})},                                                                           // 3 not found
		{Op: OpSetSCRAM, Security: sec(SecurityChange{Name: "bob", Mechanism: devices.SCRAMSHA512, SCRAM: scramCred(2), CreatedAt: t0})},                                                                           // 4 creates bob
		{Op: OpSetSCRAM, Security: sec(SecurityChange{Name: "bob", Mechanism: devices.SCRAMSHA256, SCRAM: scramCred(3)})},                                                                                          // 5
		{Op: OpSetSCRAM, Security: sec(SecurityChange{Name: "bob", Mechanism: devices.SCRAMSHA256, SCRAM: &devices.SCRAMCredential{Salt: []byte{1}, Iterations: 10, StoredKey: []byte{1}, ServerKey: []byte{1}}})}, // 6 too few iterations
		{Op: OpDeleteSCRAM, Security: sec(SecurityChange{Name: "bob", Mechanism: devices.SCRAMSHA512})},                                                                                                            // 7
		{Op: OpDeleteSCRAM, Security: sec(SecurityChange{Name: "bob", Mechanism: devices.SCRAMSHA512})},                                                                                                            // 8 gone already
		{Op: OpAddACLs, Security: sec(SecurityChange{ACLs: []devices.KafkaACL{acl("User:bob", "t", "READ"), acl("User:alice", "t", "WRITE"), acl("User:bob", "t", "READ")}})},                                      // 9
		{Op: OpAddACLs, Security: sec(SecurityChange{ACLs: []devices.KafkaACL{acl("User:carol", "u", "READ"), acl("bad", "t", "READ")}})},                                                                          // 10 all or none
		{Op: OpAddACLs, Security: sec(SecurityChange{ACLs: []devices.KafkaACL{acl("User:carol", "u", "READ"), acl("User:carol", "prefix.x", "WRITE")}})},                                                           // 11
		{Op: OpDeleteACLs, Security: sec(SecurityChange{Filter: &devices.KafkaACLFilter{Principal: "User:carol", PatternType: "MATCH", ResourceName: ptr("u")}})},                                                  // 12
		{Op: OpDeleteSCRAM, Security: sec(SecurityChange{Name: "bob", Mechanism: devices.SCRAMSHA256})},                                                                                                            // 13 bob's last: bob removed
		{Op: OpDeleteUser, Security: sec(SecurityChange{Name: "bob"})},                                                                                                                                             // 14 not found
		{Op: OpPutUser}, // 15 no change
	}
}

func ptr(s string) *string { return &s }

func TestFSMSecurityRecords(t *testing.T) {
	f := NewFSM(nil)
	res := applyAll(t, f, securityRecords())
	for i, want := range map[int]error{1: devices.ErrUserExists, 3: devices.ErrUserNotFound, 6: devices.ErrInvalidCredential,
		8: devices.ErrUserNotFound, 10: devices.ErrInvalidKafkaACL, 14: devices.ErrUserNotFound, 15: ErrInvalidRecord} {
		if !errors.Is(res[i].Err, want) {
			t.Errorf("record %d: %v, want %v", i, res[i].Err, want)
		}
	}
	for _, i := range []int{0, 2, 4, 5, 7, 9, 11, 12, 13} {
		if res[i].Err != nil {
			t.Errorf("record %d: %v", i, res[i].Err)
		}
	}
	s := f.Image().Security
	if got := s.UserNames(); !reflect.DeepEqual(got, []string{"alice"}) {
		t.Fatalf("users %v", got)
	}
	a := s.Users["alice"]
	if string(a.PlainHash) != "$2a$bcrypt-alice-2" || len(a.SCRAM) != 0 || !a.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Fatalf("alice after the new password: %+v (the creation time stays, the old SCRAM goes)", a)
	}
	want := []devices.KafkaACL{acl("User:alice", "t", "WRITE"), acl("User:bob", "t", "READ"), acl("User:carol", "prefix.x", "WRITE")}
	for i := range want {
		want[i].Host = "*"
	}
	if !reflect.DeepEqual(s.ACLs, want) {
		t.Fatalf("acls\n%v\nwant\n%v", s.ACLs, want)
	}
	if d := res[12]; d.Value != 1 || len(d.ACLs) != 1 || d.ACLs[0].ResourceName != "u" {
		t.Fatalf("delete_acls answered %+v", d)
	}

	// Deterministic: the same records give the same bytes.
	g := NewFSM(nil)
	applyAll(t, g, securityRecords())
	x, _ := json.Marshal(f.Image())
	y, _ := json.Marshal(g.Image())
	if !bytes.Equal(x, y) {
		t.Fatal("the same security records gave two images")
	}
	// No password, nor anything a record did not carry.
	if bytes.Contains(x, []byte("password")) {
		t.Fatal("image holds a password field")
	}
}

func TestFSMSecuritySnapshotRoundTrip(t *testing.T) {
	a := NewFSM(nil)
	applyAll(t, a, append(sampleRecords(), securityRecords()...))
	snap, _ := a.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	b := NewFSM(nil)
	if err := b.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.Image(), b.Image()) {
		t.Fatalf("restored image differs:\n%+v\n%+v", a.Image().Security, b.Image().Security)
	}
	if len(b.Image().Security.Users) != 1 || len(b.Image().Security.ACLs) != 3 {
		t.Fatalf("restored security %+v", b.Image().Security)
	}

	// A snapshot written before the security state existed loads, with
	// none, and takes security records afterwards.
	old := `{"v":1,"image":{"index":3,"brokers":{"1":{"id":1,"incarnation":1,"endpoints":{"kafka":"127.0.0.1:1"},"fenced":false}},"topics":{},"mirror":{},"next_producer_id":0}}`
	c := NewFSM(nil)
	if err := c.Restore(io.NopCloser(strings.NewReader(old))); err != nil {
		t.Fatal(err)
	}
	if im := c.Image(); len(im.Security.Users) != 0 || len(im.Security.ACLs) != 0 || im.Brokers[1] == nil {
		t.Fatalf("old snapshot restored as %+v", im)
	}
	res := applyAll(t, c, securityRecords()[:1])
	if res[0].Err != nil || c.Image().Security.Users["alice"] == nil {
		t.Fatalf("a user after an old snapshot: %v", res[0].Err)
	}
}

func TestFSMImportSecurityOncePerBroker(t *testing.T) {
	f := NewFSM(nil)
	u := func(name string) devices.UserSecrets {
		return devices.UserSecrets{Name: name, PlainHash: []byte("h-" + name)}
	}
	imp := func(broker int32, users ...devices.UserSecrets) Record {
		return Record{Op: OpImportSecurity, Broker: broker, Security: &SecurityChange{Users: users,
			ACLs: []devices.KafkaACL{acl("User:"+users[0].Name, "t", "READ")}}}
	}
	res := applyAll(t, f, []Record{
		imp(1, u("alice"), u("bob"), devices.UserSecrets{Name: "*", PlainHash: []byte("x")}), // the invalid one skipped
		{Op: OpDeleteUser, Security: &SecurityChange{Name: "bob"}},
		imp(1, u("bob")), // broker 1 again (a restart): nothing comes back
		imp(2, devices.UserSecrets{Name: "alice", PlainHash: []byte("other")}, u("carol")), // the cluster's alice stays
	})
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("record %d: %v", i, r.Err)
		}
	}
	if res[0].Value != 2 || res[2].Value != 0 || res[3].Value != 1 {
		t.Fatalf("imported %d, %d, %d users", res[0].Value, res[2].Value, res[3].Value)
	}
	s := f.Image().Security
	if got := s.UserNames(); !reflect.DeepEqual(got, []string{"alice", "carol"}) {
		t.Fatalf("users %v", got)
	}
	if string(s.Users["alice"].PlainHash) != "h-alice" {
		t.Fatal("a joining node's user replaced the cluster's")
	}
	if len(s.ACLs) != 1 || !s.Imported[1] || !s.Imported[2] {
		t.Fatalf("acls %v imported %v", s.ACLs, s.Imported)
	}
}
