package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"ferry/devices"
	"ferry/ingest/kafka"
)

// adminCall sends a JSON request to a node's admin API and returns the
// status.
func adminCall(t *testing.T, n *Node, method, path string, body any) int {
	t.Helper()
	var rd bytes.Buffer
	if body != nil {
		json.NewEncoder(&rd).Encode(body)
	}
	req, err := http.NewRequest(method, "http://"+n.AdminAddr()+path, &rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// topicDescribable asks node id itself (not a leader) for topic's
// metadata as the client's principal: nil when the ACLs let it describe
// the topic.
func topicDescribable(ctx context.Context, cl *kgo.Client, id int32, topic string) error {
	if _, err := cl.Request(ctx, kmsg.NewPtrMetadataRequest()); err != nil { // learn the brokers
		return err
	}
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	kresp, err := cl.Broker(int(id)).Request(ctx, req)
	if err != nil {
		return err
	}
	return kerr.ErrorForCode(kresp.(*kmsg.MetadataResponse).Topics[0].ErrorCode)
}

// TestClusterReplicatesUsersAndACLs: in a cluster, users and ACLs are the
// cluster's: a user added through one node's admin API, a SCRAM credential
// set through another's AlterUserScramCredentials, an ACL created with
// kadm on a third, all hold on every node; a user deleted on one node logs
// in nowhere.
func TestClusterReplicatesUsersAndACLs(t *testing.T) {
	tc := startTestClusterWith(t, func(o *Options) {
		o.KafkaSASL = []string{kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512}
		o.KafkaSuperUsers = []string{"admin"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n1, n2, n3 := tc.nodes[0], tc.nodes[1], tc.nodes[2]

	// The admin API of node 1 adds the super user; it logs in on node 3.
	if code := adminCall(t, n1, "POST", "/api/users", map[string]string{"name": "admin", "password": "adm1n"}); code != http.StatusCreated {
		t.Fatalf("POST /api/users: %d", code)
	}
	tc.waitFor("admin in every registry", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.devices.GetUser("admin"); err != nil {
				return false
			}
		}
		return true
	})
	if _, err := kadm.NewClient(scramClient(t, n3, "admin", "adm1n")).BrokerMetadata(ctx); err != nil {
		t.Fatalf("admin, added on node 1, on node 3: %v", err)
	}
	// Adding it again on node 2 is refused by the cluster's rule.
	if code := adminCall(t, n2, "POST", "/api/users", map[string]string{"name": "admin", "password": "x"}); code != http.StatusConflict {
		t.Fatalf("POST /api/users of an existing user on another node: %d, want 409", code)
	}

	// A SCRAM credential made by a client and set through node 2's
	// AlterUserScramCredentials authenticates on node 3.
	adm2 := kadm.NewClient(scramClient(t, n2, "admin", "adm1n"))
	altered, err := adm2.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 4096, Password: "c4rol"}})
	if err != nil || altered.Error() != nil {
		t.Fatalf("AlterUserSCRAMs on node 2: %+v %v", altered, err)
	}
	tc.waitFor("carol in every registry", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.devices.UserSCRAM("SCRAM-SHA-256", "carol"); err != nil {
				return false
			}
		}
		return true
	})
	carol3 := scramClient(t, n3, "carol", "c4rol")
	if _, err := kadm.NewClient(carol3).BrokerMetadata(ctx); err != nil {
		t.Fatalf("carol, set on node 2, on node 3: %v", err)
	}

	// Without an ACL carol may not describe the topic on node 3; an ACL
	// created through node 1 lets her there and on node 2.
	adm1 := kadm.NewClient(scramClient(t, n1, "admin", "adm1n"))
	if _, err := adm1.CreateTopic(ctx, 1, 1, nil, "readings"); err != nil {
		t.Fatal(err)
	}
	if err := topicDescribable(ctx, carol3, 3, "readings"); err != kerr.TopicAuthorizationFailed {
		t.Fatalf("carol describing readings on node 3 before any ACL: %v, want TOPIC_AUTHORIZATION_FAILED", err)
	}
	b := kadm.NewACLs().Allow("User:carol").Topics("readings").Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral)
	created, err := adm1.CreateACLs(ctx, b)
	if err != nil || len(created) != 1 || created[0].Err != nil {
		t.Fatalf("CreateACLs on node 1: %+v %v", created, err)
	}
	tc.waitFor("the ACL in every registry", func() bool {
		for _, n := range tc.nodes {
			if !n.devices.AuthorizeKafka("User:carol", "127.0.0.1", "TOPIC", "readings", "WRITE") {
				return false
			}
		}
		return true
	})
	carol2 := scramClient(t, n2, "carol", "c4rol")
	for id, cl := range map[int32]*kgo.Client{3: carol3, 2: carol2} {
		if err := topicDescribable(ctx, cl, id, "readings"); err != nil {
			t.Fatalf("carol describing readings on node %d after the ACL: %v", id, err)
		}
	}
	// Deleted through node 3's DeleteAcls: enforced on node 2.
	d := kadm.NewACLs().Allow("User:carol").AllowHosts().Topics("readings").Operations(kadm.OpWrite).ResourcePatternType(kadm.ACLPatternLiteral)
	deleted, err := kadm.NewClient(scramClient(t, n3, "admin", "adm1n")).DeleteACLs(ctx, d)
	if err != nil || len(deleted) != 1 || len(deleted[0].Deleted) != 1 {
		t.Fatalf("DeleteACLs on node 3: %+v %v", deleted, err)
	}
	tc.waitFor("the ACL gone from every registry", func() bool {
		for _, n := range tc.nodes {
			if n.devices.AuthorizeKafka("User:carol", "127.0.0.1", "TOPIC", "readings", "WRITE") {
				return false
			}
		}
		return true
	})
	if err := topicDescribable(ctx, carol2, 2, "readings"); err != kerr.TopicAuthorizationFailed {
		t.Fatalf("carol on node 2 after the ACL's deletion on node 3: %v", err)
	}

	// Deleted through node 2's admin API: carol logs in nowhere.
	if code := adminCall(t, n2, "DELETE", "/api/users/carol", nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/users/carol: %d", code)
	}
	tc.waitFor("carol gone from every registry", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.devices.GetUser("carol"); err == nil {
				return false
			}
		}
		return true
	})
	for _, n := range tc.nodes {
		if _, err := kadm.NewClient(scramClient(t, n, "carol", "c4rol")).BrokerMetadata(ctx); err == nil {
			t.Fatalf("carol logged in on %s after her deletion", n.KafkaAddr())
		}
	}
	// The image holds hashes and credentials, never a password.
	im := n3.Cluster().Image()
	if u := im.Security.Users["admin"]; u == nil || len(u.PlainHash) == 0 || len(u.SCRAM) != 2 {
		t.Fatalf("admin in the image: %+v", u)
	}
	raw, _ := json.Marshal(im)
	if bytes.Contains(raw, []byte("adm1n")) {
		t.Fatal("a password in the metadata image")
	}
}

// TestClusterImportsANodesUsersOnce: a single node's users and ACLs come
// into the cluster it founds (node 1) and reach every node; a node that
// restarts after a user was deleted does not bring the user back.
func TestClusterImportsANodesUsersOnce(t *testing.T) {
	alone := startSASLNode(t, map[string]string{"admin": "adm1n", "alice": "al1ce"})
	dir := alone.opts.DataDir
	if err := alone.devices.AddKafkaACLs([]devices.KafkaACL{{Principal: "User:alice", ResourceType: "TOPIC", ResourceName: "t",
		PatternType: "LITERAL", Operation: "READ", Permission: "ALLOW"}}); err != nil {
		t.Fatal(err)
	}
	alone.Close()

	tc := startTestClusterWith(t, func(o *Options) {
		o.KafkaSASL = []string{kafka.SASLPlain, kafka.SASLSCRAMSHA256, kafka.SASLSCRAMSHA512}
		o.KafkaSuperUsers = []string{"admin"}
		if o.Cluster.NodeID == 1 {
			o.DataDir = dir
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tc.waitFor("node 1's users and ACL on every node", func() bool {
		for _, n := range tc.nodes {
			if _, err := n.devices.GetUser("alice"); err != nil {
				return false
			}
			if !n.devices.AuthorizeKafka("User:alice", "127.0.0.1", "TOPIC", "t", "READ") {
				return false
			}
		}
		return true
	})
	if _, err := kadm.NewClient(scramClient(t, tc.nodes[2], "alice", "al1ce")).BrokerMetadata(ctx); err != nil {
		t.Fatalf("alice, a user of node 1 alone, on node 3: %v", err)
	}

	// Node 3 stops; alice is deleted meanwhile; node 3 comes back and
	// follows the cluster instead of bringing her back.
	tc.nodes[2].Close()
	tc.nodes[2] = nil
	if code := adminCall(t, tc.nodes[0], "DELETE", "/api/users/alice", nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/users/alice: %d", code)
	}
	tc.start(2)
	tc.waitFor("alice gone from the restarted node", func() bool {
		_, err := tc.nodes[2].devices.GetUser("alice")
		return err != nil
	})
	if _, err := kadm.NewClient(scramClient(t, tc.nodes[2], "alice", "al1ce")).BrokerMetadata(ctx); err == nil {
		t.Fatal("alice logged in on the restarted node after her deletion")
	}
	for _, n := range tc.nodes {
		if n.Cluster().Image().Security.Users["alice"] != nil {
			t.Fatal("the restarted node brought alice back into the cluster")
		}
	}
}
