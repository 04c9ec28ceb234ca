package kafka

import (
	"errors"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
)

// TestGroupAdmin: what the admin API sees of a group (members, decoded
// assignments, subscriptions), and resetting and deleting its offsets,
// refused while it has members.
func TestGroupAdmin(t *testing.T) {
	b := startBroker(t, nil)
	b.log.CreateTopic("orders", 4, nil)
	g := b.srv.opts.Groups
	c1 := startGroupConsumer(t, b, "billing", "orders")
	c2 := startGroupConsumer(t, b, "billing", "orders")
	waitStable(t, b, "billing", 2)
	waitExclusive(t, b, "billing", "orders", 4)

	info, err := g.Group("billing")
	if err != nil || info.State != "Stable" || info.ProtocolType != "consumer" || len(info.Members) != 2 {
		t.Fatalf("Group: %+v %v", info, err)
	}
	var all []int32
	for _, m := range info.Members {
		if m.ClientID == "" || m.Host == "" || !slices.Equal(m.Subscription, []string{"orders"}) {
			t.Errorf("member %+v", m)
		}
		all = append(all, m.Assignment["orders"]...)
	}
	slices.Sort(all)
	if !slices.Equal(all, []int32{0, 1, 2, 3}) {
		t.Fatalf("assignments cover %v", all)
	}
	if list := g.List(); len(list) != 1 || list[0].Group != "billing" || len(list[0].Members) != 2 {
		t.Fatalf("List: %+v", list)
	}
	if err := g.ResetOffsets("billing", "orders", map[int32]int64{0: 0}); !errors.Is(err, ErrGroupNotEmpty) {
		t.Fatalf("reset with members: %v", err)
	}
	if err := g.Delete("billing"); !errors.Is(err, ErrGroupNotEmpty) {
		t.Fatalf("delete with members: %v", err)
	}

	c1.close()
	c2.close()
	waitFor(t, "the group to empty", func() bool { s, n := describeMembers(t, b, "billing"); return s == "Empty" && n == 0 })
	if err := g.ResetOffsets("billing", "orders", map[int32]int64{0: 7, 3: 2}); err != nil {
		t.Fatal(err)
	}
	got, err := g.CommittedOffsets("billing")
	if err != nil || got["orders"][0] != 7 || got["orders"][3] != 2 {
		t.Fatalf("CommittedOffsets: %v %v", got, err)
	}
	// Kafka clients read the reset offsets.
	fetched, err := kadm.NewClient(b.client(t)).FetchOffsets(ctxT(t), "billing")
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := fetched.Lookup("orders", 0); o.At != 7 {
		t.Fatalf("OffsetFetch after reset: %+v", o)
	}
	if err := g.Delete("billing"); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Group("billing"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("Group after delete: %v", err)
	}
	if err := g.Delete("billing"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("delete twice: %v", err)
	}
	if _, err := g.Group("nobody"); !errors.Is(err, ErrUnknownGroup) {
		t.Fatalf("unknown group: %v", err)
	}
}
