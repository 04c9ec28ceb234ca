package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

type denyAll struct{}

func (denyAll) Authorize(principal, host, rt, name, op string) bool { return false }
func (denyAll) AuthorizeAny(principal, host, rt, op string) bool    { return false }
func (denyAll) AddACLs([]ACL) error                                 { return nil }
func (denyAll) ACLs(ACLFilter) ([]ACL, error)                       { return nil, nil }
func (denyAll) DeleteACLs(ACLFilter) ([]ACL, error)                 { return nil, nil }

// TestTopicIDRevealsNoNameWithoutDescribe: a principal without DESCRIBE on
// a topic who names it by id (Metadata v12, DeleteTopics v6) is refused
// without learning its name.
func TestTopicIDRevealsNoNameWithoutDescribe(t *testing.T) {
	b := startBroker(t, func(o *Options) {
		o.SASLMechanisms = []string{SASLPlain}
		o.Credentials = memCreds{"alice": "s3cret"}
		o.ACLs = denyAll{}
		o.AuthFailureDelay = -1
	})
	info, err := b.log.CreateTopic("payroll-secret", 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.addr), kgo.SASL(plain.Auth{User: "alice", Pass: "s3cret"}.AsMechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	md := kmsg.NewPtrMetadataRequest()
	md.Version = 12
	rt := kmsg.NewMetadataRequestTopic()
	rt.TopicID = info.ID
	md.Topics = append(md.Topics, rt)
	mresp, err := md.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if n := mresp.Topics[0].Topic; n != nil && *n != "" {
		t.Errorf("Metadata by id, no DESCRIBE: error %d, name %q revealed", mresp.Topics[0].ErrorCode, *n)
	}
	dt := kmsg.NewPtrDeleteTopicsRequest()
	dt.Version = 6
	t6 := kmsg.NewDeleteTopicsRequestTopic()
	t6.TopicID = info.ID
	dt.Topics = append(dt.Topics, t6)
	dresp, err := dt.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if n := dresp.Topics[0].Topic; n != nil && *n != "" {
		t.Errorf("DeleteTopics by id, no DESCRIBE: error %d, name %q revealed", dresp.Topics[0].ErrorCode, *n)
	}
}
