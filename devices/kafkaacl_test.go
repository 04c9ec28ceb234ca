package devices

import (
	"errors"
	"reflect"
	"testing"
)

func acl(principal, rtype, name, pattern, op, perm string) KafkaACL {
	return KafkaACL{Principal: principal, Host: "*", ResourceType: rtype, ResourceName: name, PatternType: pattern, Operation: op, Permission: perm}
}

func TestAuthorizeKafka(t *testing.T) {
	r, _, _ := openTest(t)
	err := r.AddKafkaACLs([]KafkaACL{
		acl("User:alice", "TOPIC", "sensors.", "PREFIXED", "WRITE", "ALLOW"),
		acl("User:alice", "TOPIC", "sensors.secret", "LITERAL", "ALL", "DENY"),
		acl("User:alice", "GROUP", "g1", "LITERAL", "READ", "ALLOW"),
		acl("User:*", "TOPIC", "public", "LITERAL", "READ", "ALLOW"),
		acl("User:bob", "TOPIC", "*", "LITERAL", "ALL", "ALLOW"),
		acl("User:bob", "TOPIC", "private", "LITERAL", "READ", "DENY"),
		acl("User:carol", "CLUSTER", ClusterResource, "LITERAL", "ALTER_CONFIGS", "ALLOW"),
		{Principal: "User:dave", Host: "10.0.0.1", ResourceType: "TOPIC", ResourceName: "t", PatternType: "LITERAL", Operation: "READ", Permission: "ALLOW"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		principal, host, rtype, name, op string
		want                             bool
	}{
		{"User:alice", "1.2.3.4", "TOPIC", "sensors.temp", "WRITE", true},
		{"User:alice", "1.2.3.4", "TOPIC", "sensors.temp", "DESCRIBE", true}, // implied by WRITE
		{"User:alice", "1.2.3.4", "TOPIC", "sensors.temp", "READ", false},
		{"User:alice", "1.2.3.4", "TOPIC", "sensors.secret", "WRITE", false}, // DENY wins
		{"User:alice", "1.2.3.4", "TOPIC", "sensors", "WRITE", false},        // the prefix is "sensors."
		{"User:alice", "1.2.3.4", "GROUP", "g1", "READ", true},
		{"User:alice", "1.2.3.4", "GROUP", "g2", "READ", false},
		{"User:alice", "1.2.3.4", "TOPIC", "public", "READ", true}, // User:*
		{"User:bob", "1.2.3.4", "TOPIC", "anything", "DELETE", true},
		{"User:bob", "1.2.3.4", "TOPIC", "private", "READ", false},
		{"User:bob", "1.2.3.4", "TOPIC", "private", "WRITE", true},
		{"User:bob", "1.2.3.4", "TOPIC", "private", "DESCRIBE", true}, // DENY READ does not deny DESCRIBE
		{"User:carol", "1.2.3.4", "CLUSTER", ClusterResource, "DESCRIBE_CONFIGS", true},
		{"User:carol", "1.2.3.4", "CLUSTER", ClusterResource, "ALTER", false},
		{"User:dave", "10.0.0.1", "TOPIC", "t", "READ", true},
		{"User:dave", "10.0.0.2", "TOPIC", "t", "READ", false},
		{"User:nobody", "1.2.3.4", "TOPIC", "t", "READ", false}, // no ACL: deny
	} {
		if got := r.AuthorizeKafka(tc.principal, tc.host, tc.rtype, tc.name, tc.op); got != tc.want {
			t.Errorf("AuthorizeKafka(%s, %s, %s %s, %s) = %t, want %t", tc.principal, tc.host, tc.rtype, tc.name, tc.op, got, tc.want)
		}
	}
	for _, tc := range []struct {
		principal, op string
		want          bool
	}{
		{"User:alice", "WRITE", true},
		{"User:bob", "READ", true}, // "*" allowed, only "private" denied
		{"User:carol", "WRITE", false},
	} {
		if got := r.AuthorizeKafkaAny(tc.principal, "1.2.3.4", "TOPIC", tc.op); got != tc.want {
			t.Errorf("AuthorizeKafkaAny(%s, %s) = %t", tc.principal, tc.op, got)
		}
	}
}

func TestKafkaACLsStoreFilterDelete(t *testing.T) {
	r, path, clock := openTest(t)
	a1 := acl("User:alice", "TOPIC", "t1", "LITERAL", "READ", "ALLOW")
	a2 := acl("User:alice", "TOPIC", "t", "PREFIXED", "WRITE", "ALLOW")
	a3 := acl("User:bob", "GROUP", "g", "LITERAL", "READ", "DENY")
	if err := r.AddKafkaACLs([]KafkaACL{a1, a2, a3, a1}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []KafkaACL{
		acl("alice", "TOPIC", "t", "LITERAL", "READ", "ALLOW"),
		acl("User:alice", "USER", "t", "LITERAL", "READ", "ALLOW"),
		acl("User:alice", "TOPIC", "t", "MATCH", "READ", "ALLOW"),
		acl("User:alice", "TOPIC", "t", "LITERAL", "ANY", "ALLOW"),
		acl("User:alice", "TOPIC", "t", "LITERAL", "READ", "ANY"),
		acl("User:alice", "CLUSTER", "other", "LITERAL", "ALTER", "ALLOW"),
		acl("User:alice", "TOPIC", "", "LITERAL", "READ", "ALLOW"),
	} {
		if err := r.AddKafkaACLs([]KafkaACL{a1, bad}); !errors.Is(err, ErrInvalidKafkaACL) {
			t.Errorf("AddKafkaACLs(%+v) = %v", bad, err)
		}
	}
	all, _ := r.KafkaACLs(KafkaACLFilter{})
	if len(all) != 3 {
		t.Fatalf("%d bindings stored, want 3: %+v", len(all), all)
	}
	name := "t1"
	match, _ := r.KafkaACLs(KafkaACLFilter{ResourceType: "TOPIC", ResourceName: &name, PatternType: "MATCH"})
	if len(match) != 2 {
		t.Fatalf("MATCH t1: %+v", match)
	}
	lit, _ := r.KafkaACLs(KafkaACLFilter{ResourceName: &name, PatternType: "LITERAL"})
	if !reflect.DeepEqual(lit, []KafkaACL{a1}) {
		t.Fatalf("LITERAL t1: %+v", lit)
	}
	del, err := r.DeleteKafkaACLs(KafkaACLFilter{Principal: "User:alice"})
	if err != nil || len(del) != 2 {
		t.Fatalf("DeleteKafkaACLs: %+v, %v", del, err)
	}
	if r.AuthorizeKafka("User:alice", "h", "TOPIC", "t1", "READ") {
		t.Fatal("a deleted binding still allows")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r2, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	left, _ := r2.KafkaACLs(KafkaACLFilter{})
	if !reflect.DeepEqual(left, []KafkaACL{a3}) {
		t.Fatalf("after reopen: %+v", left)
	}
}
