package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"ferry/devices"
	"ferry/edge/adminapi"
)

// TestUsersAndACLsCommands runs the users and acls commands against a
// stopped node's data directory and against a running node's admin API,
// and checks that what they wrote authenticates and authorises.
func TestUsersAndACLsCommands(t *testing.T) {
	fastHashes(t)
	dir := t.TempDir()
	withStdin(t, "s3cret\n")
	runCLICases(t, []cliCase{
		{[]string{"users", "add", "alice", "--password-stdin", "--data-dir", dir, "--create-data-dir"}, 0, "added user alice"},
		{[]string{"users", "add", "alice", "--password", "x", "--data-dir", dir}, 1, "user already exists"},
		{[]string{"users", "add", "bob", "--data-dir", dir}, 2, "--password-stdin"},
		{[]string{"users", "passwd", "nobody", "--password", "x", "--data-dir", dir}, 1, "user not found"},
		{[]string{"acls", "add", "--principal", "alice", "--resource", "sensors.", "--pattern", "prefixed", "--operation", "write", "--data-dir", dir}, 0, "User:alice"},
		{[]string{"acls", "add", "--principal", "alice", "--resource-type", "USER", "--resource", "x", "--operation", "read", "--data-dir", dir}, 2, "resource type"},
		{[]string{"acls", "delete", "--data-dir", dir}, 2, "at least one"},
	})
	users := ferryJSON[[]adminapi.UserView](t, "users", "list", "--json", "--data-dir", dir)
	if len(users) != 1 || users[0].Name != "alice" || len(users[0].Mechanisms) != 3 {
		t.Fatalf("users list --json: %+v", users)
	}
	acls := ferryJSON[[]devices.KafkaACL](t, "acls", "list", "--principal", "User:alice", "--json", "--data-dir", dir)
	if len(acls) != 1 || acls[0].PatternType != "PREFIXED" || acls[0].Operation != "WRITE" || acls[0].Host != "*" {
		t.Fatalf("acls list --json: %+v", acls)
	}
	r := openDevices(t, dir, time.Now())
	if err := r.AuthenticateUser("alice", "s3cret"); err != nil {
		t.Fatalf("the user the command added: %v", err)
	}
	if !r.AuthorizeKafka("User:alice", "127.0.0.1", "TOPIC", "sensors.t", "WRITE") {
		t.Fatal("the ACL the command added does not allow")
	}
	r.Close()
	runCLICases(t, []cliCase{
		{[]string{"acls", "delete", "--principal", "alice", "--data-dir", dir}, 0, "deleted 1 binding(s)"},
		{[]string{"users", "delete", "alice", "--data-dir", dir}, 0, "deleted user alice"},
	})

	// The same through a running node's admin API.
	_, admin := startNode(t, "")
	withStdin(t, "pw\n")
	runCLICases(t, []cliCase{
		{[]string{"users", "add", "carol", "--password-stdin", "--admin", admin}, 0, "added user carol"},
		{[]string{"users", "passwd", "carol", "--password", "pw2", "--admin", admin}, 0, "password of user carol changed"},
		{[]string{"acls", "add", "--principal", "carol", "--resource-type", "group", "--resource", "g1", "--operation", "read", "--admin", admin}, 0, "GROUP"},
		{[]string{"acls", "add", "--principal", "carol", "--resource-type", "cluster", "--operation", "describe", "--admin", admin}, 0, "kafka-cluster"},
	})
	if users := ferryJSON[[]adminapi.UserView](t, "users", "list", "--json", "--admin", admin); len(users) != 1 || users[0].Name != "carol" {
		t.Fatalf("users list --json (admin): %+v", users)
	}
	if acls := ferryJSON[[]devices.KafkaACL](t, "acls", "list", "--resource-type", "GROUP", "--json", "--admin", admin); len(acls) != 1 || acls[0].ResourceName != "g1" {
		t.Fatalf("acls list --json (admin): %+v", acls)
	}
	if del := ferryJSON[[]devices.KafkaACL](t, "acls", "delete", "--principal", "carol", "--json", "--admin", admin); len(del) != 2 {
		t.Fatalf("acls delete --json (admin): %+v", del)
	}
	runCLICases(t, []cliCase{
		{[]string{"users", "delete", "carol", "--admin", admin}, 0, "deleted user carol"},
		{[]string{"users", "delete", "carol", "--admin", admin}, 1, "user not found"},
	})
}

// TestUsersCommandsRefuseAClusterNodesDataDir: a cluster node's users and
// ACLs are the cluster's, so the offline commands do not change its data
// directory's copy (which the node would undo), and say where to go;
// reading it is still allowed.
func TestUsersCommandsRefuseAClusterNodesDataDir(t *testing.T) {
	fastHashes(t)
	dir := t.TempDir()
	withStdin(t, "s3cret\n")
	runCLICases(t, []cliCase{
		{[]string{"users", "add", "alice", "--password-stdin", "--data-dir", dir, "--create-data-dir"}, 0, "added user alice"},
	})
	if err := os.Mkdir(filepath.Join(dir, "cluster"), 0o755); err != nil {
		t.Fatal(err)
	}
	runCLICases(t, []cliCase{
		{[]string{"users", "add", "bob", "--password", "x", "--data-dir", dir}, 1, "cluster's node"},
		{[]string{"users", "passwd", "alice", "--password", "x", "--data-dir", dir}, 1, "--admin"},
		{[]string{"users", "delete", "alice", "--data-dir", dir}, 1, "cluster's node"},
		{[]string{"acls", "add", "--principal", "alice", "--resource", "t", "--operation", "read", "--data-dir", dir}, 1, "cluster's node"},
		{[]string{"acls", "delete", "--principal", "alice", "--data-dir", dir}, 1, "cluster's node"},
		{[]string{"users", "list", "--data-dir", dir}, 0, "alice"},
	})
}
