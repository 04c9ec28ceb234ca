package devices

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Kafka ACLs say what Kafka principals may do on the Kafka listener, with
// Kafka's own model and names, so Kafka's admin tools manage them
// (CreateAcls, DescribeAcls, DeleteAcls):
//
//   - a binding is (principal, host, resource type, resource name, pattern
//     type, operation, permission); principal is "User:NAME" or "User:*",
//     host an IP address or "*";
//   - resource types TOPIC, GROUP and CLUSTER (whose one resource is
//     "kafka-cluster"); a LITERAL name matches itself, and "*" every name; a
//     PREFIXED name matches every name it begins;
//   - DENY wins over ALLOW; with neither, the answer is no (a node's default,
//     as Kafka's without allow.everyone.if.no.acl.found);
//   - ALLOW of READ, WRITE, DELETE or ALTER implies DESCRIBE, and ALLOW of
//     ALTER_CONFIGS implies DESCRIBE_CONFIGS; ALL stands for every operation.
//
// The bindings are few (an edge has a handful of principals) and every
// check scans them from an immutable slice, without a lock.

var bucketKafkaACLs = []byte("kafka_acls") // JSON of a KafkaACL → nothing

// KafkaACL is one Kafka ACL binding. Its fields take Kafka's names, upper
// case: ResourceType TOPIC, GROUP or CLUSTER; PatternType LITERAL or
// PREFIXED; Operation ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
// CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS or IDEMPOTENT_WRITE;
// Permission ALLOW or DENY.
type KafkaACL struct {
	Principal    string `json:"principal"`
	Host         string `json:"host"`
	ResourceType string `json:"resource_type"`
	ResourceName string `json:"resource_name"`
	PatternType  string `json:"pattern_type"`
	Operation    string `json:"operation"`
	Permission   string `json:"permission"`
}

// KafkaACLFilter selects bindings, as DescribeAcls and DeleteAcls do: an
// empty string or "ANY" matches every value, a nil ResourceName every name.
// PatternType MATCH selects the bindings that apply to ResourceName: the
// LITERAL ones naming it or "*", and the PREFIXED ones that begin it.
type KafkaACLFilter struct {
	Principal    string  `json:"principal,omitempty"`
	Host         string  `json:"host,omitempty"`
	ResourceType string  `json:"resource_type,omitempty"`
	ResourceName *string `json:"resource_name,omitempty"`
	PatternType  string  `json:"pattern_type,omitempty"`
	Operation    string  `json:"operation,omitempty"`
	Permission   string  `json:"permission,omitempty"`
}

// ClusterResource is the name of the CLUSTER resource.
const ClusterResource = "kafka-cluster"

var aclOperations = map[string]bool{
	"ALL": true, "READ": true, "WRITE": true, "CREATE": true, "DELETE": true, "ALTER": true, "DESCRIBE": true,
	"CLUSTER_ACTION": true, "DESCRIBE_CONFIGS": true, "ALTER_CONFIGS": true, "IDEMPOTENT_WRITE": true,
}

// ValidateKafkaACL returns ErrInvalidKafkaACL unless a is a binding a node
// can store (see KafkaACL); an empty Host is taken as "*".
func ValidateKafkaACL(a *KafkaACL) error {
	if a.Host == "" {
		a.Host = "*"
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidKafkaACL}, args...)...)
	}
	name, ok := strings.CutPrefix(a.Principal, "User:")
	switch {
	case !ok:
		return bad("principal %q: want User:NAME or User:*", a.Principal)
	case name != "*" && ValidateUserName(name) != nil:
		return bad("principal %q: %v", a.Principal, ValidateUserName(name))
	case a.ResourceType != "TOPIC" && a.ResourceType != "GROUP" && a.ResourceType != "CLUSTER":
		return bad("resource type %q: want TOPIC, GROUP or CLUSTER", a.ResourceType)
	case a.ResourceName == "":
		return bad("empty resource name")
	case a.ResourceType == "CLUSTER" && (a.ResourceName != ClusterResource || a.PatternType != "LITERAL"):
		return bad("the CLUSTER resource is LITERAL %q", ClusterResource)
	case a.PatternType != "LITERAL" && a.PatternType != "PREFIXED":
		return bad("pattern type %q: want LITERAL or PREFIXED", a.PatternType)
	case !aclOperations[a.Operation]:
		return bad("operation %q", a.Operation)
	case a.Permission != "ALLOW" && a.Permission != "DENY":
		return bad("permission %q: want ALLOW or DENY", a.Permission)
	}
	return nil
}

func aclKey(a KafkaACL) []byte {
	b, _ := json.Marshal(a) // cannot fail: strings only
	return b
}

// loadKafkaACLs reads every binding (Open).
func (r *Registry) loadKafkaACLs(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketKafkaACLs)
	if err != nil {
		return err
	}
	var acls []KafkaACL
	err = b.ForEach(func(k, _ []byte) error {
		var a KafkaACL
		if err := json.Unmarshal(k, &a); err != nil {
			return fmt.Errorf("kafka ACL %q: %w", k, err)
		}
		acls = append(acls, a)
		return nil
	})
	sortACLs(acls)
	r.acls.Store(&acls)
	return err
}

func sortACLs(acls []KafkaACL) {
	sort.Slice(acls, func(i, j int) bool { return string(aclKey(acls[i])) < string(aclKey(acls[j])) })
}

func (r *Registry) aclSnapshot() []KafkaACL {
	if p := r.acls.Load(); p != nil {
		return *p
	}
	return nil
}

// AddKafkaACLs stores bindings, all or none; a binding already stored is
// not stored twice.
func (r *Registry) AddKafkaACLs(acls []KafkaACL) error {
	acls = append([]KafkaACL(nil), acls...)
	for i := range acls {
		if err := ValidateKafkaACL(&acls[i]); err != nil {
			return err
		}
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	have := map[KafkaACL]bool{}
	next := append([]KafkaACL(nil), r.aclSnapshot()...)
	for _, a := range next {
		have[a] = true
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKafkaACLs)
		for _, a := range acls {
			if have[a] {
				continue
			}
			have[a] = true
			next = append(next, a)
			if err := b.Put(aclKey(a), []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	sortACLs(next)
	r.acls.Store(&next)
	return nil
}

// KafkaACLs returns the bindings f selects, sorted.
func (r *Registry) KafkaACLs(f KafkaACLFilter) ([]KafkaACL, error) {
	if r.isShut.Load() {
		return nil, ErrClosed
	}
	out := []KafkaACL{}
	for _, a := range r.aclSnapshot() {
		if f.Matches(a) {
			out = append(out, a)
		}
	}
	return out, nil
}

// DeleteKafkaACLs removes the bindings f selects and returns them.
func (r *Registry) DeleteKafkaACLs(f KafkaACLFilter) ([]KafkaACL, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	var keep []KafkaACL
	deleted := []KafkaACL{}
	for _, a := range r.aclSnapshot() {
		if f.Matches(a) {
			deleted = append(deleted, a)
		} else {
			keep = append(keep, a)
		}
	}
	if len(deleted) == 0 {
		return deleted, nil
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketKafkaACLs)
		for _, a := range deleted {
			if err := b.Delete(aclKey(a)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.acls.Store(&keep)
	return deleted, nil
}

func anyOr(f, v string) bool { return f == "" || f == "ANY" || f == v }

// Matches reports whether f selects a.
func (f KafkaACLFilter) Matches(a KafkaACL) bool {
	if !anyOr(f.Principal, a.Principal) || !anyOr(f.Host, a.Host) || !anyOr(f.ResourceType, a.ResourceType) ||
		!anyOr(f.Operation, a.Operation) || !anyOr(f.Permission, a.Permission) {
		return false
	}
	switch f.PatternType {
	case "", "ANY":
		return f.ResourceName == nil || *f.ResourceName == a.ResourceName
	case "MATCH":
		return f.ResourceName == nil || a.appliesTo(*f.ResourceName)
	default:
		return f.PatternType == a.PatternType && (f.ResourceName == nil || *f.ResourceName == a.ResourceName)
	}
}

// appliesTo reports whether a's resource pattern covers name.
func (a KafkaACL) appliesTo(name string) bool {
	if a.PatternType == "PREFIXED" {
		return strings.HasPrefix(name, a.ResourceName)
	}
	return a.ResourceName == name || a.ResourceName == "*"
}

// allows reports whether an ALLOW of a's operation grants op.
func impliedBy(aclOp, op string) bool {
	if aclOp == op || aclOp == "ALL" {
		return true
	}
	switch op {
	case "DESCRIBE":
		return aclOp == "READ" || aclOp == "WRITE" || aclOp == "DELETE" || aclOp == "ALTER"
	case "DESCRIBE_CONFIGS":
		return aclOp == "ALTER_CONFIGS"
	}
	return false
}

func (a KafkaACL) forPrincipal(principal, host string) bool {
	return (a.Principal == principal || a.Principal == "User:*") && (a.Host == "*" || a.Host == host)
}

// AuthorizeKafka reports whether principal ("User:NAME") connected from
// host may do op on the resource (resourceType, name): some ALLOW binding
// grants it and no DENY binding forbids it. No binding at all: no.
func (r *Registry) AuthorizeKafka(principal, host, resourceType, name, op string) bool {
	allowed := false
	for _, a := range r.aclSnapshot() {
		if a.ResourceType != resourceType || !a.forPrincipal(principal, host) || !a.appliesTo(name) {
			continue
		}
		if a.Permission == "DENY" {
			if a.Operation == op || a.Operation == "ALL" {
				return false
			}
		} else if impliedBy(a.Operation, op) {
			allowed = true
		}
	}
	return allowed
}

// AuthorizeKafkaAny reports whether principal may do op on at least one
// resource of resourceType, as Kafka's authorizeByResourceType does (an
// idempotent producer needs WRITE on some topic): some ALLOW binding grants
// op on a pattern that no DENY binding covers whole.
func (r *Registry) AuthorizeKafkaAny(principal, host, resourceType, op string) bool {
	acls := r.aclSnapshot()
	denied := func(allow KafkaACL) bool {
		for _, d := range acls {
			if d.Permission != "DENY" || d.ResourceType != resourceType || !d.forPrincipal(principal, host) ||
				(d.Operation != op && d.Operation != "ALL") {
				continue
			}
			switch {
			case d.PatternType == "LITERAL" && d.ResourceName == "*",
				d.PatternType == "PREFIXED" && strings.HasPrefix(allow.ResourceName, d.ResourceName),
				d.PatternType == "LITERAL" && allow.PatternType == "LITERAL" && d.ResourceName == allow.ResourceName:
				return true
			}
		}
		return false
	}
	for _, a := range acls {
		if a.Permission == "ALLOW" && a.ResourceType == resourceType && a.forPrincipal(principal, host) &&
			impliedBy(a.Operation, op) && !denied(a) {
			return true
		}
	}
	return false
}
