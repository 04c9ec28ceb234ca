package devices

import (
	"reflect"
	"testing"
)

// TestSyncKafkaSecurity: the registry is made to hold exactly the users
// and bindings given (made elsewhere by UserSecretsFor), a second pass
// changes nothing and keeps a verified password's cache, and the result
// survives a reopen.
func TestSyncKafkaSecurity(t *testing.T) {
	r, path, clock := openTest(t)
	if err := r.AddUser("stale", "pw"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddKafkaACLs([]KafkaACL{{Principal: "User:stale", ResourceType: "TOPIC", ResourceName: "x", PatternType: "LITERAL", Operation: "READ", Permission: "ALLOW"}}); err != nil {
		t.Fatal(err)
	}
	alice, err := r.UserSecretsFor("alice", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.GetUser("alice"); err == nil {
		t.Fatal("UserSecretsFor stored the user")
	}
	acls := []KafkaACL{
		{Principal: "User:alice", Host: "*", ResourceType: "TOPIC", ResourceName: "t", PatternType: "LITERAL", Operation: "WRITE", Permission: "ALLOW"},
		{Principal: "User:alice", Host: "*", ResourceType: "GROUP", ResourceName: "g", PatternType: "LITERAL", Operation: "READ", Permission: "ALLOW"},
	}
	res, err := r.SyncKafkaSecurity([]UserSecrets{alice}, acls)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(res, SyncResult{UsersPut: []string{"alice"}, UsersDeleted: []string{"stale"}, ACLsChanged: true}) {
		t.Fatalf("first pass %+v", res)
	}
	if err := r.AuthenticateUser("alice", "s3cret"); err != nil || !scramLogin(t, r, SCRAMSHA512, "alice", "s3cret") {
		t.Fatalf("alice after the sync: %v", err)
	}
	if _, err := r.GetUser("stale"); err == nil || r.AuthorizeKafka("User:stale", "h", "TOPIC", "x", "READ") {
		t.Fatal("the stale user or its binding stayed")
	}
	r.mu.RLock()
	cached := r.users["alice"].verified
	r.mu.RUnlock()
	res, err = r.SyncKafkaSecurity([]UserSecrets{alice}, []KafkaACL{acls[1], acls[0], acls[0]})
	if err != nil || len(res.UsersPut)+len(res.UsersDeleted) != 0 || res.ACLsChanged {
		t.Fatalf("second pass changed %+v %v", res, err)
	}
	r.mu.RLock()
	kept := r.users["alice"].verified == cached && cached != nil
	r.mu.RUnlock()
	if !kept {
		t.Fatal("an unchanged user lost its verification cache")
	}
	r.Close()
	r2, err := Open(path, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	users, got, err := r2.KafkaSecurity()
	if err != nil || len(users) != 1 || users[0].Name != "alice" || len(got) != 2 || !r2.AuthorizeKafka("User:alice", "h", "TOPIC", "t", "WRITE") {
		t.Fatalf("after reopen: %+v %+v %v", users, got, err)
	}
}
