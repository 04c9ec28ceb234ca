package edge

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestSCRAMCredentialsThroughTheKafkaAPIs: DescribeUserScramCredentials
// and AlterUserScramCredentials (kadm) work on the registry's users, the
// same as 'ferry users': a credential upserted over the wire lets its user
// authenticate, a deleted one no longer does, and bad requests get Kafka's
// errors.
func TestSCRAMCredentialsThroughTheKafkaAPIs(t *testing.T) {
	n := startSASLNode(t, map[string]string{"admin": "adm1n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := scramClient(t, n, "admin", "adm1n")
	adm := kadm.NewClient(admin)
	altered, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: "carol", Mechanism: kadm.ScramSha256, Iterations: 8192, Password: "c4rol"}})
	if err != nil || altered["carol"].Err != nil {
		t.Fatalf("AlterUserSCRAMs: %+v %v", altered, err)
	}
	// kadm checks iterations itself: the broker's own answer, raw.
	bad := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	up := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
	up.Name, up.Mechanism, up.Iterations, up.Salt, up.SaltedPassword = "dave", 1, 100, []byte("salt"), []byte("salted")
	bad.Upsertions = append(bad.Upsertions, up)
	if r, err := bad.RequestWith(ctx, admin); err != nil || len(r.Results) != 1 || r.Results[0].ErrorCode != kerr.UnacceptableCredential.Code {
		t.Fatalf("100 iterations: %+v %v, want UNACCEPTABLE_CREDENTIAL", r, err)
	}
	if _, err := n.devices.GetUser("dave"); err == nil {
		t.Fatal("a refused upsertion created its user")
	}
	if _, err := kadm.NewClient(scramClient(t, n, "carol", "c4rol")).BrokerMetadata(ctx); err != nil {
		t.Fatalf("carol, created over the wire, authenticating: %v", err)
	}
	described, err := adm.DescribeUserSCRAMs(ctx, "carol", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if c := described["carol"]; c.Err != nil || len(c.CredInfos) != 1 || c.CredInfos[0].Mechanism != kadm.ScramSha256 || c.CredInfos[0].Iterations != 8192 {
		t.Fatalf("carol described: %+v", c)
	}
	if !errors.Is(described["nobody"].Err, kerr.ResourceNotFound) {
		t.Fatalf("an unknown user described: %+v", described["nobody"])
	}
	all, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil || len(all) != 2 || all["admin"].Err != nil || len(all["admin"].CredInfos) != 2 {
		t.Fatalf("every user described: %+v %v", all, err)
	}
	altered, err = adm.AlterUserSCRAMs(ctx, []kadm.DeleteSCRAM{{User: "carol", Mechanism: kadm.ScramSha256}, {User: "nobody", Mechanism: kadm.ScramSha512}}, nil)
	if err != nil || altered["carol"].Err != nil || !errors.Is(altered["nobody"].Err, kerr.ResourceNotFound) {
		t.Fatalf("deleting: %+v %v", altered, err)
	}
	if _, err := n.devices.GetUser("carol"); err == nil {
		t.Fatal("carol, left with no credential, is still a user")
	}
	if _, err := kadm.NewClient(scramClient(t, n, "carol", "c4rol")).BrokerMetadata(ctx); err == nil {
		t.Fatal("carol authenticated after her credential was deleted")
	}
}
