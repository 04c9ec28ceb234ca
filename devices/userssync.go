package devices

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// A node of a center cluster keeps its Kafka users and ACLs in the
// cluster's metadata (edge/cluster), agreed through raft, and the registry
// follows that copy: the credentials are made once, by the node that
// proposes the change (UserSecretsFor), and every node's registry is then
// made to hold exactly the cluster's users and bindings (SyncKafkaSecurity),
// so authentication and authorisation stay local reads.

// UserSecretsFor makes user name's credentials for password, as AddUser
// would store them (a bcrypt hash for PLAIN, a SCRAM credential per
// mechanism with its own salt), without storing anything: the salts and the
// hash are drawn here, never by whoever applies the result.
func (r *Registry) UserSecretsFor(name, password string) (UserSecrets, error) {
	if err := ValidateUserName(name); err != nil {
		return UserSecrets{}, err
	}
	rec, err := r.credentials(name, password)
	if err != nil {
		return UserSecrets{}, err
	}
	rec.CreatedAt = r.opts.Now().UTC()
	return rec, nil
}

// ValidateSCRAMCredential returns ErrInvalidCredential unless c is a
// credential SetUserSCRAM stores for mechanism.
func ValidateSCRAMCredential(mechanism string, c SCRAMCredential) error {
	if _, ok := scramHash(mechanism); !ok {
		return fmt.Errorf("%w: unknown SCRAM mechanism %q", ErrInvalidCredential, mechanism)
	}
	if c.Iterations < MinSCRAMIterations || len(c.Salt) == 0 || len(c.StoredKey) == 0 || len(c.ServerKey) == 0 {
		return fmt.Errorf("%w: a SCRAM credential needs a salt, keys and at least %d iterations", ErrInvalidCredential, MinSCRAMIterations)
	}
	return nil
}

// KafkaSecurity returns every user with its secrets, sorted by name, and
// every ACL binding: what a single node brings into a cluster it founds.
func (r *Registry) KafkaSecurity() ([]UserSecrets, []KafkaACL, error) {
	if r.isShut.Load() {
		return nil, nil, ErrClosed
	}
	r.mu.RLock()
	users := make([]UserSecrets, 0, len(r.users))
	for _, e := range r.users {
		users = append(users, e.rec)
	}
	r.mu.RUnlock()
	slices.SortFunc(users, func(a, b UserSecrets) int {
		return bytes.Compare([]byte(a.Name), []byte(b.Name))
	})
	return users, append([]KafkaACL(nil), r.aclSnapshot()...), nil
}

// SyncResult says what SyncKafkaSecurity changed.
type SyncResult struct {
	UsersPut, UsersDeleted []string
	ACLsChanged            bool
}

// SyncKafkaSecurity makes the registry hold exactly users and acls (a
// cluster's): users missing or different are stored, users not among them
// removed, and the bindings replaced when they differ, in one bbolt
// transaction. It is idempotent: a user whose secrets are unchanged keeps
// its entry and its PLAIN verification cache, and a second call with the
// same arguments writes nothing.
func (r *Registry) SyncKafkaSecurity(users []UserSecrets, acls []KafkaACL) (SyncResult, error) {
	var out SyncResult
	want := make(map[string]UserSecrets, len(users))
	for _, u := range users {
		want[u.Name] = u
	}
	next := append([]KafkaACL(nil), acls...)
	sortACLs(next)
	next = slices.Compact(next)

	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return out, ErrClosed
	}
	r.mu.RLock()
	for name, u := range want {
		if e := r.users[name]; e == nil || !sameSecrets(e.rec, u) {
			out.UsersPut = append(out.UsersPut, name)
		}
	}
	for name := range r.users {
		if _, keep := want[name]; !keep {
			out.UsersDeleted = append(out.UsersDeleted, name)
		}
	}
	r.mu.RUnlock()
	slices.Sort(out.UsersPut)
	slices.Sort(out.UsersDeleted)
	out.ACLsChanged = !slices.Equal(next, r.aclSnapshot())
	if len(out.UsersPut)+len(out.UsersDeleted) == 0 && !out.ACLsChanged {
		return out, nil
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketUsers)
		for _, name := range out.UsersPut {
			if err := putJSON(b, name, want[name]); err != nil {
				return err
			}
		}
		for _, name := range out.UsersDeleted {
			if err := b.Delete([]byte(name)); err != nil {
				return err
			}
		}
		if !out.ACLsChanged {
			return nil
		}
		if err := tx.DeleteBucket(bucketKafkaACLs); err != nil {
			return err
		}
		ab, err := tx.CreateBucket(bucketKafkaACLs)
		if err != nil {
			return err
		}
		for _, a := range next {
			if err := ab.Put(aclKey(a), []byte{}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return SyncResult{}, err
	}
	r.mu.Lock()
	for _, name := range out.UsersPut {
		r.users[name] = &userEntry{rec: want[name]} // a new entry: no verification cache
	}
	for _, name := range out.UsersDeleted {
		delete(r.users, name)
	}
	r.mu.Unlock()
	if out.ACLsChanged {
		r.acls.Store(&next)
	}
	return out, nil
}

func sameSecrets(a, b UserSecrets) bool {
	return a.Name == b.Name && a.CreatedAt.Equal(b.CreatedAt) && bytes.Equal(a.PlainHash, b.PlainHash) &&
		maps.EqualFunc(a.SCRAM, b.SCRAM, func(x, y SCRAMCredential) bool {
			return x.Iterations == y.Iterations && bytes.Equal(x.Salt, y.Salt) &&
				bytes.Equal(x.StoredKey, y.StoredKey) && bytes.Equal(x.ServerKey, y.ServerKey)
		})
}
