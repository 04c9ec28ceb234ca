package devices

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"hash"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/xdg-go/scram"
	bolt "go.etcd.io/bbolt"
)

// Kafka users are the principals (User:NAME) the Kafka listener
// authenticates with SASL. They live beside the devices, in the same file,
// and are kept the way a Kafka broker keeps them: never the password, but
//
//   - for PLAIN, a bcrypt hash (verified as a device's password is, with the
//     same verification cache);
//   - for SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), the salt, the
//     iteration count, StoredKey and ServerKey of each mechanism. The password
//     is not SASLprepped, as Kafka's own ScramFormatter does not: a client
//     that does not prepare it (franz-go, librdkafka) derives the same keys.

// SCRAM mechanisms, as SASL names them.
const (
	SCRAMSHA256 = "SCRAM-SHA-256"
	SCRAMSHA512 = "SCRAM-SHA-512"
)

// MinSCRAMIterations is the fewest PBKDF2 iterations a SCRAM credential may
// have: Kafka's minimum, and the least its clients accept.
const MinSCRAMIterations = 4096

var bucketUsers = []byte("kafka_users") // name → UserSecrets (JSON)

// bucketUsersMeta keeps keyDecoy, the secret behind unknown users' decoy
// SCRAM salts (SCRAMDecoy), drawn once when the file is created.
var bucketUsersMeta, keyDecoy = []byte("kafka_users_meta"), []byte("scram_decoy_key")

// User is a Kafka principal, as Get and List show it: no secret.
type User struct {
	Name string `json:"name"`
	// Mechanisms are the SASL mechanisms the user has credentials for.
	Mechanisms []string  `json:"mechanisms"`
	CreatedAt  time.Time `json:"created_at"`
}

// SCRAMCredential is what a server keeps for one user and SCRAM mechanism.
type SCRAMCredential struct {
	Salt       []byte `json:"salt"`
	Iterations int    `json:"iterations"`
	StoredKey  []byte `json:"stored_key"`
	ServerKey  []byte `json:"server_key"`
}

// UserSecrets is a user as stored, secrets included.
type UserSecrets struct {
	Name      string                     `json:"name"`
	CreatedAt time.Time                  `json:"created_at"`
	PlainHash []byte                     `json:"plain_hash"`
	SCRAM     map[string]SCRAMCredential `json:"scram"`
}

// userEntry is a user in memory; replaced, never changed, except for the
// verification cache.
type userEntry struct {
	rec      UserSecrets
	verified *[32]byte // guarded by Registry.mu; the MAC of the last PLAIN password that verified
}

func (u UserSecrets) view() User {
	mechs := []string{}
	if len(u.PlainHash) > 0 {
		mechs = append(mechs, "PLAIN")
	}
	for m := range u.SCRAM {
		mechs = append(mechs, m)
	}
	sort.Strings(mechs)
	return User{Name: u.Name, Mechanisms: mechs, CreatedAt: u.CreatedAt}
}

// ValidateUserName returns ErrInvalidUser unless name is 1 to 256 bytes of
// UTF-8 without control characters, and not "*" (the wildcard of ACLs).
func ValidateUserName(name string) error {
	switch {
	case name == "" || len(name) > 256:
		return fmt.Errorf("%w: name must be 1 to 256 bytes", ErrInvalidUser)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: name is not UTF-8", ErrInvalidUser)
	case name == "*":
		return fmt.Errorf("%w: \"*\" is the ACL wildcard", ErrInvalidUser)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%w: name contains a control character", ErrInvalidUser)
	}
	return nil
}

func scramHash(mechanism string) (func() hash.Hash, bool) {
	switch mechanism {
	case SCRAMSHA256:
		return sha256.New, true
	case SCRAMSHA512:
		return sha512.New, true
	}
	return nil, false
}

// credentials makes a user's record for password: a bcrypt hash and a SCRAM
// credential per mechanism, each with its own random salt.
func (r *Registry) credentials(name, password string) (UserSecrets, error) {
	if password == "" {
		return UserSecrets{}, fmt.Errorf("%w: empty", ErrInvalidPassword)
	}
	plain, err := r.hash(password)
	if err != nil {
		return UserSecrets{}, err
	}
	rec := UserSecrets{Name: name, PlainHash: plain, SCRAM: map[string]SCRAMCredential{}}
	for _, m := range []string{SCRAMSHA256, SCRAMSHA512} {
		h, _ := scramHash(m)
		salt := make([]byte, 24)
		rand.Read(salt)
		c, err := scram.HashGeneratorFcn(h).NewClientUnprepped(name, password, "")
		if err != nil {
			return UserSecrets{}, err
		}
		sc, err := c.GetStoredCredentialsWithError(scram.KeyFactors{Salt: string(salt), Iters: r.opts.SCRAMIterations})
		if err != nil {
			return UserSecrets{}, err
		}
		rec.SCRAM[m] = SCRAMCredential{Salt: salt, Iterations: sc.Iters, StoredKey: sc.StoredKey, ServerKey: sc.ServerKey}
	}
	return rec, nil
}

// loadUsers reads every user (Open).
func (r *Registry) loadUsers(tx *bolt.Tx) error {
	b, err := tx.CreateBucketIfNotExists(bucketUsers)
	if err != nil {
		return err
	}
	meta, err := tx.CreateBucketIfNotExists(bucketUsersMeta)
	if err != nil {
		return err
	}
	if k := meta.Get(keyDecoy); len(k) == 32 {
		r.decoyKey = bytes.Clone(k)
	} else {
		r.decoyKey = make([]byte, 32)
		rand.Read(r.decoyKey)
		if err := meta.Put(keyDecoy, r.decoyKey); err != nil {
			return err
		}
	}
	return b.ForEach(func(k, v []byte) error {
		var rec UserSecrets
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("user %q: %w", k, err)
		}
		r.users[rec.Name] = &userEntry{rec: rec}
		return nil
	})
}

// AddUser creates Kafka user name with password's credentials for PLAIN,
// SCRAM-SHA-256 and SCRAM-SHA-512. It returns ErrUserExists if the name is
// taken.
func (r *Registry) AddUser(name, password string) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	rec, err := r.credentials(name, password)
	if err != nil {
		return err
	}
	rec.CreatedAt = r.opts.Now().UTC()
	return r.putUser(rec, false)
}

// SetUserPassword replaces user name's credentials (every mechanism) and
// drops its verification cache.
func (r *Registry) SetUserPassword(name, password string) error {
	rec, err := r.credentials(name, password)
	if err != nil {
		return err
	}
	return r.putUser(rec, true)
}

// putUser stores rec; replace says whether the user must exist (true) or
// must not (false).
func (r *Registry) putUser(rec UserSecrets, replace bool) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.mu.RLock()
	old := r.users[rec.Name]
	r.mu.RUnlock()
	switch {
	case replace && old == nil:
		return fmt.Errorf("%w: %q", ErrUserNotFound, rec.Name)
	case !replace && old != nil:
		return fmt.Errorf("%w: %q", ErrUserExists, rec.Name)
	case replace:
		rec.CreatedAt = old.rec.CreatedAt
	}
	err := r.db.Update(func(tx *bolt.Tx) error { return putJSON(tx.Bucket(bucketUsers), rec.Name, rec) })
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.users[rec.Name] = &userEntry{rec: rec}
	r.mu.Unlock()
	return nil
}

// DeleteUser removes user name. The Kafka ACLs naming it stay (as Kafka's
// do): a user added again under the name has them.
func (r *Registry) DeleteUser(name string) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.mu.RLock()
	old := r.users[name]
	r.mu.RUnlock()
	if old == nil {
		return fmt.Errorf("%w: %q", ErrUserNotFound, name)
	}
	if err := r.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketUsers).Delete([]byte(name)) }); err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.users, name)
	r.mu.Unlock()
	return nil
}

// GetUser returns user name (no secret).
func (r *Registry) GetUser(name string) (User, error) {
	if r.isShut.Load() {
		return User{}, ErrClosed
	}
	r.mu.RLock()
	e := r.users[name]
	r.mu.RUnlock()
	if e == nil {
		return User{}, fmt.Errorf("%w: %q", ErrUserNotFound, name)
	}
	return e.rec.view(), nil
}

// Users returns every Kafka user, sorted by name.
func (r *Registry) Users() ([]User, error) {
	if r.isShut.Load() {
		return nil, ErrClosed
	}
	r.mu.RLock()
	out := make([]User, 0, len(r.users))
	for _, e := range r.users {
		out = append(out, e.rec.view())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// AuthenticateUser checks a Kafka user's password (SASL PLAIN). It returns
// nil or ErrBadCredentials, which costs one bcrypt comparison whether the
// user is unknown or the password wrong. A password that verified before,
// with no SetUserPassword or DeleteUser since, is accepted from the cache
// (an HMAC compared in constant time) without running bcrypt.
func (r *Registry) AuthenticateUser(name, password string) error {
	if r.isShut.Load() {
		return ErrClosed
	}
	r.mu.RLock()
	e := r.users[name]
	var cached *[32]byte
	if e != nil {
		cached = e.verified
	}
	r.mu.RUnlock()
	if e == nil || len(e.rec.PlainHash) == 0 || len(password) > 72 {
		r.compare(r.dummy(), password)
		return ErrBadCredentials
	}
	mac := r.passwordMAC("user\x00"+name, password)
	if cached != nil && hmac.Equal(cached[:], mac[:]) {
		return nil
	}
	if !r.compare(e.rec.PlainHash, password) {
		return ErrBadCredentials
	}
	r.mu.Lock()
	e.verified = &mac // dropped with e if the user changed meanwhile
	r.mu.Unlock()
	return nil
}

// UserSCRAM returns user name's credential for a SCRAM mechanism
// (SCRAMSHA256, SCRAMSHA512); ErrBadCredentials if there is none.
func (r *Registry) UserSCRAM(mechanism, name string) (SCRAMCredential, error) {
	if r.isShut.Load() {
		return SCRAMCredential{}, ErrClosed
	}
	r.mu.RLock()
	e := r.users[name]
	r.mu.RUnlock()
	if e == nil {
		return SCRAMCredential{}, ErrBadCredentials
	}
	c, ok := e.rec.SCRAM[mechanism]
	if !ok {
		return SCRAMCredential{}, ErrBadCredentials
	}
	return c, nil
}

// SCRAMDecoy is the credential a SCRAM exchange shows for a user name that
// has none for mechanism, so that an unknown user cannot be told from a
// known one: its salt is the same at every attempt and across restarts
// (keyed by a secret kept in the file), its iteration count is the one
// real users get, and no proof matches its keys.
func (r *Registry) SCRAMDecoy(mechanism, name string) SCRAMCredential {
	h, ok := scramHash(mechanism)
	if !ok {
		h = sha256.New
	}
	mac := hmac.New(sha256.New, r.decoyKey)
	mac.Write([]byte(mechanism + "\x00" + name))
	key := make([]byte, h().Size())
	rand.Read(key)
	return SCRAMCredential{Salt: mac.Sum(nil)[:24], Iterations: r.opts.SCRAMIterations, StoredKey: key, ServerKey: key}
}

// SetUserSCRAM stores user name's credential for a SCRAM mechanism, made
// by a client from the password (Kafka's AlterUserScramCredentials
// upsertion: the server never sees the password), creating the user, with
// no other credential, if there is none. The other mechanisms' credentials
// and the PLAIN hash are kept: they still verify the old password.
func (r *Registry) SetUserSCRAM(name, mechanism string, c SCRAMCredential) error {
	if err := ValidateUserName(name); err != nil {
		return err
	}
	if err := ValidateSCRAMCredential(mechanism, c); err != nil {
		return err
	}
	return r.changeUser(name, func(rec *UserSecrets, exists bool) error {
		if !exists {
			*rec = UserSecrets{Name: name, CreatedAt: r.opts.Now().UTC()}
		}
		next := make(map[string]SCRAMCredential, len(rec.SCRAM)+1)
		for m, old := range rec.SCRAM {
			next[m] = old
		}
		next[mechanism] = c
		rec.SCRAM = next
		return nil
	})
}

// DeleteUserSCRAM removes user name's credential for a SCRAM mechanism:
// ErrUserNotFound if it has none. A user left with no credential at all is
// removed, as Kafka has no user without one.
func (r *Registry) DeleteUserSCRAM(name, mechanism string) error {
	return r.changeUser(name, func(rec *UserSecrets, exists bool) error {
		if _, ok := rec.SCRAM[mechanism]; !exists || !ok {
			return fmt.Errorf("%w: %q has no %s credential", ErrUserNotFound, name, mechanism)
		}
		next := make(map[string]SCRAMCredential, len(rec.SCRAM))
		for m, old := range rec.SCRAM {
			if m != mechanism {
				next[m] = old
			}
		}
		rec.SCRAM = next
		return nil
	})
}

// changeUser applies change to a copy of user name's record (the zero
// record and false if there is none) and stores the result, or removes the
// user if it is left with no credential.
func (r *Registry) changeUser(name string, change func(rec *UserSecrets, exists bool) error) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	r.mu.RLock()
	old := r.users[name]
	r.mu.RUnlock()
	var rec UserSecrets
	if old != nil {
		rec = old.rec
	}
	if err := change(&rec, old != nil); err != nil {
		return err
	}
	gone := len(rec.PlainHash) == 0 && len(rec.SCRAM) == 0
	err := r.db.Update(func(tx *bolt.Tx) error {
		if gone {
			return tx.Bucket(bucketUsers).Delete([]byte(name))
		}
		return putJSON(tx.Bucket(bucketUsers), name, rec)
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	if gone {
		delete(r.users, name)
	} else {
		r.users[name] = &userEntry{rec: rec} // a new entry: no verification cache
	}
	r.mu.Unlock()
	return nil
}
