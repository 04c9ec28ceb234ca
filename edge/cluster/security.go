package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"ferry/devices"
)

// The cluster's security state: the Kafka users (each with its bcrypt hash
// for PLAIN and its SCRAM credentials, never a password) and the Kafka ACL
// bindings, agreed through raft like the topics, so a user added on one
// node logs in on every node and an ACL is enforced everywhere. Salts and
// hashes are made by the node that proposes a change (devices'
// UserSecretsFor, or the client for AlterUserScramCredentials); Apply only
// checks and stores what the record carries. Each node's device registry
// follows the image (SecurityApplier), so authentication and authorisation
// stay local reads.

// The security records (see (*Image).applySecurity for their rules).
const (
	OpPutUser        Op = "put_user"
	OpDeleteUser     Op = "delete_user"
	OpSetSCRAM       Op = "set_scram"
	OpDeleteSCRAM    Op = "delete_scram"
	OpAddACLs        Op = "add_acls"
	OpDeleteACLs     Op = "delete_acls"
	OpImportSecurity Op = "import_security"
)

// SecurityChange is what a security record carries (Record.Security).
type SecurityChange struct {
	// User is the user put (put_user), with its secrets.
	User *devices.UserSecrets `json:"user,omitempty"`
	// Replace: put_user replaces an existing user (a new password),
	// keeping its creation time; without it the name must be free.
	Replace bool `json:"replace,omitempty"`
	// Name is the user deleted, or whose SCRAM credential is set or
	// deleted.
	Name      string                   `json:"name,omitempty"`
	Mechanism string                   `json:"mechanism,omitempty"`
	SCRAM     *devices.SCRAMCredential `json:"scram,omitempty"`
	// CreatedAt is a user's creation time when set_scram creates it (the
	// proposer's clock, never Apply's).
	CreatedAt time.Time `json:"created_at,omitzero"`
	// ACLs are the bindings added (add_acls, import_security).
	ACLs []devices.KafkaACL `json:"acls,omitempty"`
	// Filter selects the bindings deleted (delete_acls), as Kafka's
	// DeleteAcls filters do.
	Filter *devices.KafkaACLFilter `json:"filter,omitempty"`
	// Users are a node's users brought into the cluster (import_security).
	Users []devices.UserSecrets `json:"users,omitempty"`
}

// Security is the image's security state.
type Security struct {
	Users map[string]*devices.UserSecrets `json:"users,omitempty"`
	// ACLs are sorted (aclCompare), each once.
	ACLs []devices.KafkaACL `json:"acls,omitempty"`
	// Imported are the brokers whose own users and ACLs were brought into
	// the cluster (import_security): each node's once, so a user the
	// cluster deleted is never brought back by a node that restarts.
	Imported map[int32]bool `json:"imported,omitempty"`
}

func (s *Security) init() {
	if s.Users == nil {
		s.Users = map[string]*devices.UserSecrets{}
	}
	if s.Imported == nil {
		s.Imported = map[int32]bool{}
	}
}

func (s Security) clone() Security {
	c := Security{ACLs: slices.Clone(s.ACLs)}
	c.init()
	for name, u := range s.Users {
		c.Users[name] = cloneUser(u)
	}
	for id := range s.Imported {
		c.Imported[id] = true
	}
	return c
}

func cloneUser(u *devices.UserSecrets) *devices.UserSecrets {
	nu := *u
	nu.PlainHash = slices.Clone(u.PlainHash)
	if u.SCRAM != nil {
		nu.SCRAM = make(map[string]devices.SCRAMCredential, len(u.SCRAM))
		for m, c := range u.SCRAM {
			nu.SCRAM[m] = devices.SCRAMCredential{Salt: slices.Clone(c.Salt), Iterations: c.Iterations,
				StoredKey: slices.Clone(c.StoredKey), ServerKey: slices.Clone(c.ServerKey)}
		}
	}
	return &nu
}

// UserNames are the users' names in order.
func (s Security) UserNames() []string {
	names := make([]string, 0, len(s.Users))
	for n := range s.Users {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

func aclCompare(a, b devices.KafkaACL) int {
	return cmp.Or(strings.Compare(a.Principal, b.Principal), strings.Compare(a.Host, b.Host),
		strings.Compare(a.ResourceType, b.ResourceType), strings.Compare(a.ResourceName, b.ResourceName),
		strings.Compare(a.PatternType, b.PatternType), strings.Compare(a.Operation, b.Operation),
		strings.Compare(a.Permission, b.Permission))
}

// The errors of the security records are the device registry's, so a
// front end answers a cluster's refusals as it answers a node's; over the
// cluster listener they travel by these codes.
func init() {
	codes["user_exists"] = devices.ErrUserExists
	codes["user_not_found"] = devices.ErrUserNotFound
	codes["invalid_user"] = devices.ErrInvalidUser
	codes["invalid_credential"] = devices.ErrInvalidCredential
	codes["invalid_kafka_acl"] = devices.ErrInvalidKafkaACL
}

// checkUser: a valid name and at least one credential, each valid.
func checkUser(u *devices.UserSecrets) error {
	if u == nil {
		return fmt.Errorf("%w: no user", ErrInvalidRecord)
	}
	if err := devices.ValidateUserName(u.Name); err != nil {
		return err
	}
	if len(u.PlainHash) == 0 && len(u.SCRAM) == 0 {
		return fmt.Errorf("%w: user %q has no credential", devices.ErrInvalidCredential, u.Name)
	}
	for m, c := range u.SCRAM {
		if err := devices.ValidateSCRAMCredential(m, c); err != nil {
			return err
		}
	}
	return nil
}

// addACLs adds the bindings not there yet, keeping the list sorted.
func (s *Security) addACLs(acls []devices.KafkaACL) {
	for _, a := range acls {
		if i, found := slices.BinarySearchFunc(s.ACLs, a, aclCompare); !found {
			s.ACLs = slices.Insert(s.ACLs, i, a)
		}
	}
}

// applySecurity applies a security record; ok is false for an op that is
// not one. Like every record's, its rules depend only on the image and
// the record.
func (im *Image) applySecurity(r Record) (res Result, ok bool) {
	switch r.Op {
	case OpPutUser, OpDeleteUser, OpSetSCRAM, OpDeleteSCRAM, OpAddACLs, OpDeleteACLs, OpImportSecurity:
	default:
		return Result{}, false
	}
	c := r.Security
	if c == nil {
		return Result{Err: fmt.Errorf("%w: %s without its change", ErrInvalidRecord, r.Op)}, true
	}
	s := &im.Security
	s.init()
	switch r.Op {
	case OpPutUser:
		// A new user (the name free) or new secrets for one (Replace: the
		// user exists; its creation time stays).
		if err := checkUser(c.User); err != nil {
			return Result{Err: err}, true
		}
		u := cloneUser(c.User)
		old := s.Users[u.Name]
		switch {
		case c.Replace && old == nil:
			return Result{Err: fmt.Errorf("%w: %q", devices.ErrUserNotFound, u.Name)}, true
		case !c.Replace && old != nil:
			return Result{Err: fmt.Errorf("%w: %q", devices.ErrUserExists, u.Name)}, true
		case c.Replace:
			u.CreatedAt = old.CreatedAt
		}
		s.Users[u.Name] = u
	case OpDeleteUser:
		// The user's ACLs stay, as Kafka's do.
		if s.Users[c.Name] == nil {
			return Result{Err: fmt.Errorf("%w: %q", devices.ErrUserNotFound, c.Name)}, true
		}
		delete(s.Users, c.Name)
	case OpSetSCRAM:
		// AlterUserScramCredentials' upsertion: the credential the client
		// made, the user created (with no other credential) if there is
		// none; its other credentials stay.
		if err := devices.ValidateUserName(c.Name); err != nil {
			return Result{Err: err}, true
		}
		if c.SCRAM == nil {
			return Result{Err: fmt.Errorf("%w: no credential", devices.ErrInvalidCredential)}, true
		}
		if err := devices.ValidateSCRAMCredential(c.Mechanism, *c.SCRAM); err != nil {
			return Result{Err: err}, true
		}
		u := s.Users[c.Name]
		if u == nil {
			u = &devices.UserSecrets{Name: c.Name, CreatedAt: c.CreatedAt}
		} else {
			u = cloneUser(u)
		}
		if u.SCRAM == nil {
			u.SCRAM = map[string]devices.SCRAMCredential{}
		}
		nc := cloneUser(&devices.UserSecrets{SCRAM: map[string]devices.SCRAMCredential{c.Mechanism: *c.SCRAM}})
		u.SCRAM[c.Mechanism] = nc.SCRAM[c.Mechanism]
		s.Users[c.Name] = u
	case OpDeleteSCRAM:
		// A user left with no credential at all is removed.
		u := s.Users[c.Name]
		if u == nil {
			return Result{Err: fmt.Errorf("%w: %q has no %s credential", devices.ErrUserNotFound, c.Name, c.Mechanism)}, true
		}
		if _, has := u.SCRAM[c.Mechanism]; !has {
			return Result{Err: fmt.Errorf("%w: %q has no %s credential", devices.ErrUserNotFound, c.Name, c.Mechanism)}, true
		}
		u = cloneUser(u)
		delete(u.SCRAM, c.Mechanism)
		if len(u.SCRAM) == 0 && len(u.PlainHash) == 0 {
			delete(s.Users, c.Name)
		} else {
			s.Users[c.Name] = u
		}
	case OpAddACLs:
		// All or none; a binding already there is not added twice.
		acls := slices.Clone(c.ACLs)
		for i := range acls {
			if err := devices.ValidateKafkaACL(&acls[i]); err != nil {
				return Result{Err: err}, true
			}
		}
		s.addACLs(acls)
	case OpDeleteACLs:
		// The bindings the filter selects go, and are the answer.
		if c.Filter == nil {
			return Result{Err: fmt.Errorf("%w: delete_acls without a filter", ErrInvalidRecord)}, true
		}
		var keep, gone []devices.KafkaACL
		for _, a := range s.ACLs {
			if c.Filter.Matches(a) {
				gone = append(gone, a)
			} else {
				keep = append(keep, a)
			}
		}
		s.ACLs = keep
		return Result{Value: int64(len(gone)), ACLs: gone}, true
	case OpImportSecurity:
		// A node's own users and ACLs, once per broker: the users the
		// cluster has not got (by name; the cluster's stay as they are)
		// and the bindings. Entries that are not valid are skipped, the
		// same way on every node.
		if s.Imported[r.Broker] {
			return Result{}, true
		}
		added := int64(0)
		for i := range c.Users {
			u := &c.Users[i]
			if checkUser(u) != nil || s.Users[u.Name] != nil {
				continue
			}
			s.Users[u.Name] = cloneUser(u)
			added++
		}
		var acls []devices.KafkaACL
		for _, a := range c.ACLs {
			if devices.ValidateKafkaACL(&a) == nil {
				acls = append(acls, a)
			}
		}
		s.addACLs(acls)
		s.Imported[r.Broker] = true
		return Result{Value: added}, true
	}
	return Result{}, true
}

// LocalSecurity is what the security applier changes of this node: its
// device registry (*devices.Registry).
type LocalSecurity interface {
	KafkaSecurity() ([]devices.UserSecrets, []devices.KafkaACL, error)
	SyncKafkaSecurity(users []devices.UserSecrets, acls []devices.KafkaACL) (devices.SyncResult, error)
}

// SecurityApplier makes a node's device registry follow the cluster's
// users and ACLs; see Run.
type SecurityApplier struct {
	n     *Node
	local LocalSecurity

	applied *followed // how far the registry followed the image
}

// NewSecurityApplier is the applier of local's users and ACLs; the node's
// assembly runs it (Run) in a goroutine it owns.
func (n *Node) NewSecurityApplier(local LocalSecurity) *SecurityApplier {
	return &SecurityApplier{n: n, local: local, applied: newFollowed()}
}

// Run first brings the registry's users and ACLs into the cluster, once
// for this broker (import_security: how a single node's users survive its
// becoming node 1), then makes the registry hold exactly the image's users
// and bindings at every change of the image, until ctx ends. Until the
// import has been applied the registry is left as it is, so nothing of it
// is lost before the cluster has it.
func (a *SecurityApplier) Run(ctx context.Context) {
	n := a.n
	for {
		err := a.importOnce(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		n.log.Warn("cluster: this node's users and ACLs not imported yet; retrying", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-n.stop:
			return
		case <-time.After(n.cfg.HeartbeatInterval):
		}
	}
	for {
		changed := n.fsm.Changed()
		var users []devices.UserSecrets
		var acls []devices.KafkaACL
		var index uint64
		n.fsm.View(func(im *Image) {
			index = im.Index
			s := im.Security
			for _, name := range s.UserNames() {
				users = append(users, *cloneUser(s.Users[name]))
			}
			acls = slices.Clone(s.ACLs)
		})
		r, err := a.local.SyncKafkaSecurity(users, acls)
		if err != nil {
			n.log.Error("cluster: the device registry does not follow the cluster's users and ACLs", "err", err)
		} else {
			if len(r.UsersPut)+len(r.UsersDeleted) > 0 || r.ACLsChanged {
				n.log.Info("cluster: device registry follows the metadata", "users_put", r.UsersPut, "users_deleted", r.UsersDeleted, "acls_changed", r.ACLsChanged)
			}
			a.applied.set(index)
		}
		select {
		case <-ctx.Done():
			return
		case <-n.stop:
			return
		case <-changed:
		}
	}
}

// importOnce proposes the registry's users and ACLs unless the image says
// this broker's were imported already; it returns once the local image
// shows the import (the record is a no-op if another got there first).
func (a *SecurityApplier) importOnce(ctx context.Context) error {
	n := a.n
	done := false
	n.fsm.View(func(im *Image) { done = im.Security.Imported[n.cfg.NodeID] })
	if done {
		return nil
	}
	users, acls, err := a.local.KafkaSecurity()
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := n.Propose(pctx, Record{Op: OpImportSecurity, Broker: n.cfg.NodeID, Security: &SecurityChange{Users: users, ACLs: acls}})
	if err == nil {
		err = res.Err
	}
	if err == nil && res.Value > 0 {
		n.log.Info("cluster: this node's users and ACLs imported", "users", res.Value, "acls", len(acls))
	}
	return err
}

// Wait waits until the registry has followed the image up to index.
func (a *SecurityApplier) Wait(ctx context.Context, index uint64) error {
	return a.n.waitUntil(ctx, a.applied.reached(index))
}
