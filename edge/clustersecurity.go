package edge

import (
	"context"
	"time"

	"ferry/devices"
	"ferry/edge/cluster"
)

// securityStore is where changes to Kafka users and ACLs go: the device
// registry itself for a node alone, the cluster's metadata
// (clusterSecurity) for a node of a cluster. Reads always go to the
// registry, which in a cluster follows the metadata.
type securityStore interface {
	AddUser(name, password string) error
	SetUserPassword(name, password string) error
	DeleteUser(name string) error
	SetUserSCRAM(name, mechanism string, c devices.SCRAMCredential) error
	DeleteUserSCRAM(name, mechanism string) error
	AddKafkaACLs(acls []devices.KafkaACL) error
	DeleteKafkaACLs(f devices.KafkaACLFilter) ([]devices.KafkaACL, error)
}

// startClusterSecurity makes the device registry, once open, follow the
// cluster's users and ACLs (after bringing its own into the cluster, once
// per node): one goroutine, ended with the applier of topics.
func (n *Node) startClusterSecurity() {
	if n.cluster == nil || n.devices == nil || n.security != nil {
		return
	}
	n.security = n.cluster.NewSecurityApplier(n.devices)
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.security.Run(n.clusterCtx)
	}()
}

// securityStore is where this node's changes to users and ACLs go.
func (n *Node) securityStore() securityStore {
	if n.cluster != nil && n.security != nil {
		return clusterSecurity{c: n.cluster, a: n.security, reg: n.devices, timeout: n.opts.Cluster.TopicTimeout, now: n.opts.Now}
	}
	return n.devices
}

// clusterSecurity proposes changes to users and ACLs to the controller and
// returns once this node's registry shows them, so what the caller reads
// next (GET /api/users, DescribeAcls) is what it just changed. Secrets are
// made here, by the proposer: a password's bcrypt hash and SCRAM salts
// (devices.Registry.UserSecretsFor), or the credential a Kafka client made.
type clusterSecurity struct {
	c       *cluster.Node
	a       *cluster.SecurityApplier
	reg     *devices.Registry
	timeout time.Duration
	now     func() time.Time // the node's wall clock (Options.Now)
}

func (s clusterSecurity) propose(op cluster.Op, ch cluster.SecurityChange) (cluster.Result, error) {
	d := s.timeout
	if d <= 0 {
		d = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	res, err := s.c.Propose(ctx, cluster.Record{Op: op, Security: &ch})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return res, topicError(err)
	}
	return res, s.a.Wait(ctx, res.Index)
}

func (s clusterSecurity) putUser(name, password string, replace bool) error {
	u, err := s.reg.UserSecretsFor(name, password)
	if err != nil {
		return err
	}
	_, err = s.propose(cluster.OpPutUser, cluster.SecurityChange{User: &u, Replace: replace})
	return err
}

func (s clusterSecurity) AddUser(name, password string) error {
	return s.putUser(name, password, false)
}

func (s clusterSecurity) SetUserPassword(name, password string) error {
	return s.putUser(name, password, true)
}

func (s clusterSecurity) DeleteUser(name string) error {
	_, err := s.propose(cluster.OpDeleteUser, cluster.SecurityChange{Name: name})
	return err
}

func (s clusterSecurity) SetUserSCRAM(name, mechanism string, c devices.SCRAMCredential) error {
	if err := devices.ValidateUserName(name); err != nil {
		return err
	}
	if err := devices.ValidateSCRAMCredential(mechanism, c); err != nil {
		return err
	}
	_, err := s.propose(cluster.OpSetSCRAM, cluster.SecurityChange{Name: name, Mechanism: mechanism, SCRAM: &c, CreatedAt: s.now().UTC()})
	return err
}

func (s clusterSecurity) DeleteUserSCRAM(name, mechanism string) error {
	_, err := s.propose(cluster.OpDeleteSCRAM, cluster.SecurityChange{Name: name, Mechanism: mechanism})
	return err
}

func (s clusterSecurity) AddKafkaACLs(acls []devices.KafkaACL) error {
	acls = append([]devices.KafkaACL(nil), acls...)
	for i := range acls {
		if err := devices.ValidateKafkaACL(&acls[i]); err != nil {
			return err
		}
	}
	_, err := s.propose(cluster.OpAddACLs, cluster.SecurityChange{ACLs: acls})
	return err
}

func (s clusterSecurity) DeleteKafkaACLs(f devices.KafkaACLFilter) ([]devices.KafkaACL, error) {
	res, err := s.propose(cluster.OpDeleteACLs, cluster.SecurityChange{Filter: &f})
	if err != nil {
		return nil, err
	}
	if res.ACLs == nil {
		return []devices.KafkaACL{}, nil
	}
	return res.ACLs, nil
}
