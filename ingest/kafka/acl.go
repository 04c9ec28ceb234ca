package kafka

import (
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Authorisation (with SASL on and Options.ACLs set).
//
// Every request that touches a topic, a group or the cluster asks
// conn.allowed for the operation Kafka's broker would check, and answers a
// refusal the way Kafka does: TOPIC_AUTHORIZATION_FAILED per topic,
// GROUP_AUTHORIZATION_FAILED for a group, CLUSTER_AUTHORIZATION_FAILED for
// cluster operations. Metadata and the listings leave out what the
// principal may not DESCRIBE. Super users (Options.SuperUsers) are never
// refused. When no ACL matches the answer is no: a principal can do nothing
// until an ACL allows it (Kafka's default without
// allow.everyone.if.no.acl.found). The rules, per API:
//
//	Produce                 WRITE topic
//	Fetch                   READ topic
//	ListOffsets             DESCRIBE topic
//	OffsetForLeaderEpoch    CLUSTER_ACTION cluster, else DESCRIBE topic
//	Metadata                DESCRIBE topic (listing: filtered); auto-creation CREATE cluster or topic
//	OffsetCommit            READ group, READ topic
//	OffsetFetch             DESCRIBE group, DESCRIBE topic (all topics: filtered)
//	FindCoordinator         DESCRIBE group
//	Join/Sync/Heartbeat/Leave READ group
//	DescribeGroups          DESCRIBE group
//	ListGroups              DESCRIBE cluster, else the groups it may DESCRIBE
//	DeleteGroups            DELETE group
//	OffsetDelete            DELETE group, READ topic
//	CreateTopics            CREATE cluster or topic
//	DeleteTopics            DELETE topic
//	CreatePartitions        ALTER topic
//	DescribeConfigs         DESCRIBE_CONFIGS topic or cluster (broker)
//	IncrementalAlterConfigs ALTER_CONFIGS topic or cluster (broker)
//	AlterConfigs            ALTER_CONFIGS topic or cluster (broker)
//	InitProducerId          IDEMPOTENT_WRITE cluster, or WRITE on some topic (KIP-679)
//	DescribeCluster         none (its authorized operations are the principal's)
//	DescribeAcls            DESCRIBE cluster
//	CreateAcls, DeleteAcls  ALTER cluster
//	DescribeUserScramCredentials DESCRIBE cluster
//	AlterUserScramCredentials    ALTER cluster

// ACL is one binding, with Kafka's names for its values (upper case:
// TOPIC, LITERAL, READ, ALLOW, ...; see kmsg's ACL enums' String).
type ACL struct {
	Principal    string
	Host         string
	ResourceType string
	ResourceName string
	PatternType  string
	Operation    string
	Permission   string
}

// ACLFilter selects bindings: "" or "ANY" matches every value, a nil
// ResourceName every name, PatternType MATCH the bindings that apply to
// ResourceName.
type ACLFilter struct {
	Principal    string
	Host         string
	ResourceType string
	ResourceName *string
	PatternType  string
	Operation    string
	Permission   string
}

// ErrInvalidACL is returned (wrapped) by ACLs.AddACLs for a binding it
// cannot store; the client gets INVALID_REQUEST with the message.
var ErrInvalidACL = errors.New("invalid ACL")

// ACLs keep and check the bindings. The node wires the device registry's.
type ACLs interface {
	// Authorize reports whether principal, connected from host, may do op
	// on the resource (resourceType, name).
	Authorize(principal, host, resourceType, name, op string) bool
	// AuthorizeAny reports whether principal may do op on at least one
	// resource of resourceType.
	AuthorizeAny(principal, host, resourceType, op string) bool
	AddACLs(acls []ACL) error
	ACLs(f ACLFilter) ([]ACL, error)
	DeleteACLs(f ACLFilter) ([]ACL, error)
}

// clusterName is the CLUSTER resource's one name.
const clusterName = "kafka-cluster"

// authorizing reports whether this server checks ACLs.
func (s *Server) authorizing() bool { return s.sasl != nil && s.opts.ACLs != nil }

// allowed reports whether the connection's principal may do op on the
// resource, and counts a refusal.
func (c *conn) allowed(op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if !c.s.authorizing() || c.super {
		return true
	}
	if c.s.opts.ACLs.Authorize(c.principal, c.host, rt.String(), name, op.String()) {
		return true
	}
	if m := c.s.metrics.deniedByType[rt.String()]; m != nil {
		m.Inc()
	}
	// One line per principal, operation and resource a minute: a client
	// refused retries, often.
	k := deniedKey{c.principal, op.String(), rt.String(), name}
	if ok, n := c.s.deniedLog.allow(k, time.Now()); ok {
		c.logger.Warn("refused by an ACL", "principal", c.principal, "operation", k.operation,
			"resource_type", k.resourceType, "resource", name, "host", c.host, "not_logged_since", n)
	}
	return false
}

// allowedQuiet is allowed without counting a refusal: for filtering
// listings, where leaving a resource out is not a refusal.
func (c *conn) allowedQuiet(op kmsg.ACLOperation, rt kmsg.ACLResourceType, name string) bool {
	if !c.s.authorizing() || c.super {
		return true
	}
	return c.s.opts.ACLs.Authorize(c.principal, c.host, rt.String(), name, op.String())
}

// canTopic, canGroup and canCluster are allowed for each resource type.
func (c *conn) canTopic(op kmsg.ACLOperation, topic string) bool {
	return c.allowed(op, kmsg.ACLResourceTypeTopic, topic)
}

func (c *conn) canGroup(op kmsg.ACLOperation, group string) bool {
	return c.allowed(op, kmsg.ACLResourceTypeGroup, group)
}

func (c *conn) canCluster(op kmsg.ACLOperation) bool {
	return c.allowed(op, kmsg.ACLResourceTypeCluster, clusterName)
}

// canCreateTopic: CREATE on the cluster or on the topic. Neither is counted
// as two refusals.
func (c *conn) canCreateTopic(topic string) bool {
	if c.allowedQuiet(kmsg.ACLOperationCreate, kmsg.ACLResourceTypeCluster, clusterName) {
		return true
	}
	return c.canTopic(kmsg.ACLOperationCreate, topic)
}

// configsAllowed checks a configs API's operation on a config resource: a
// topic's, or the broker's (the cluster's, as Kafka checks it). It returns
// 0 or the error code to answer.
func (c *conn) configsAllowed(op kmsg.ACLOperation, rt kmsg.ConfigResourceType, name string) int16 {
	switch rt {
	case kmsg.ConfigResourceTypeTopic:
		if !c.canTopic(op, name) {
			return kerr.TopicAuthorizationFailed.Code
		}
	default:
		if !c.canCluster(op) {
			return kerr.ClusterAuthorizationFailed.Code
		}
	}
	return 0
}

// mayProduceIdempotently: IDEMPOTENT_WRITE on the cluster, or WRITE on at
// least one topic (KIP-679).
func (c *conn) mayProduceIdempotently() bool {
	if !c.s.authorizing() || c.super {
		return true
	}
	if c.allowedQuiet(kmsg.ACLOperationIdempotentWrite, kmsg.ACLResourceTypeCluster, clusterName) ||
		c.s.opts.ACLs.AuthorizeAny(c.principal, c.host, kmsg.ACLResourceTypeTopic.String(), kmsg.ACLOperationWrite.String()) {
		return true
	}
	c.s.metrics.deniedByType["CLUSTER"].Inc()
	return false
}

// supportedOps are the operations Kafka defines on each resource type (its
// AclEntry.supportedOperations): what an authorized-operations answer can
// hold.
var supportedOps = map[kmsg.ACLResourceType][]kmsg.ACLOperation{
	kmsg.ACLResourceTypeTopic: {kmsg.ACLOperationRead, kmsg.ACLOperationWrite, kmsg.ACLOperationCreate, kmsg.ACLOperationDescribe,
		kmsg.ACLOperationDelete, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribeConfigs, kmsg.ACLOperationAlterConfigs},
	kmsg.ACLResourceTypeGroup: {kmsg.ACLOperationRead, kmsg.ACLOperationDescribe, kmsg.ACLOperationDelete},
	kmsg.ACLResourceTypeCluster: {kmsg.ACLOperationCreate, kmsg.ACLOperationClusterAction, kmsg.ACLOperationDescribeConfigs,
		kmsg.ACLOperationAlterConfigs, kmsg.ACLOperationIdempotentWrite, kmsg.ACLOperationAlter, kmsg.ACLOperationDescribe},
}

// authorizedOps is the bitfield answered when a request includes authorized
// operations (Metadata, DescribeCluster, DescribeGroups): bit n set for
// each operation of code n the principal may do on the resource. Without an
// authorizer (or for a super user) that is every operation the resource
// type supports, as Kafka answers.
func (c *conn) authorizedOps(rt kmsg.ACLResourceType, name string) int32 {
	var bits int32
	for _, op := range supportedOps[rt] {
		if c.allowedQuiet(op, rt, name) {
			bits |= 1 << int32(op)
		}
	}
	return bits
}
