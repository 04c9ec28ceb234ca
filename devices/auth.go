package devices

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// Authenticate checks a device's password. It returns nil if the device
// exists, is enabled and password is its password; ErrDisabled if the
// password is right but the device is disabled; ErrBadCredentials otherwise,
// whether the device is unknown, has no password or the password is wrong
// (these cost the same bcrypt comparison). A password that verified before,
// with no SetPassword, disabling or Delete since, is accepted from the cache
// without running bcrypt.
func (r *Registry) Authenticate(id, password string) error {
	if r.isShut.Load() {
		return ErrClosed
	}
	e := r.lookup(id)
	if e == nil || len(e.dev.PasswordHash) == 0 || len(password) > 72 {
		r.compare(r.dummy(), password)
		return ErrBadCredentials
	}
	mac := r.passwordMAC(id, password)
	if cached := e.verified.Load(); cached != nil && hmac.Equal(cached[:], mac[:]) && e.dev.Enabled {
		return nil
	}
	if !r.compare(e.dev.PasswordHash, password) {
		return ErrBadCredentials
	}
	if !e.dev.Enabled {
		return fmt.Errorf("%w: %q", ErrDisabled, id)
	}
	// If the device changed meanwhile, e is no longer installed and this
	// store is dropped with it.
	e.verified.Store(&mac)
	return nil
}

// dummy returns a hash of a random password at the registry's cost, made on
// first use so that opening the registry (every offline command) costs no
// bcrypt run.
func (r *Registry) dummy() []byte {
	r.dummyOnce.Do(func() {
		pw := make([]byte, 16)
		rand.Read(pw)
		r.dummyHash, _ = bcrypt.GenerateFromPassword(pw, r.opts.BcryptCost) // cannot fail: 16 bytes, a checked cost
	})
	return r.dummyHash
}

// compare runs bcrypt (counted, for the cache tests).
func (r *Registry) compare(hash []byte, password string) bool {
	r.compares.Add(1)
	return bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
}

// passwordMAC keys the verification cache: an HMAC-SHA-256 under a key drawn
// at Open, so the cache holds nothing an attacker could test guesses against
// offline.
func (r *Registry) passwordMAC(id, password string) [32]byte {
	h := hmac.New(sha256.New, r.authKey)
	h.Write([]byte(id))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// AuthenticateCert returns the id of the device whose CertCN is cn (the
// caller has verified the certificate chain). It returns ErrBadCredentials
// if no device has that CN and ErrDisabled if the device is disabled.
func (r *Registry) AuthenticateCert(cn string) (string, error) {
	if r.isShut.Load() {
		return "", ErrClosed
	}
	if cn == "" {
		return "", ErrBadCredentials
	}
	r.mu.RLock()
	id, ok := r.byCN[cn]
	e := r.devs[id]
	r.mu.RUnlock()
	if !ok || e == nil {
		return "", ErrBadCredentials
	}
	if !e.dev.Enabled {
		return "", fmt.Errorf("%w: %q", ErrDisabled, id)
	}
	return id, nil
}

// CanPublish reports whether device id, enabled, may publish to topic, a
// concrete topic name: false for an unknown or disabled device, and for a
// topic with wildcards or otherwise invalid.
func (r *Registry) CanPublish(id, topic string) bool {
	e := r.lookup(id)
	if e == nil || !e.dev.Enabled || !validTopicName(topic) {
		return false
	}
	levels := splitLevels(topic)
	for _, f := range e.pub {
		if matchLevels(f, levels) {
			return true
		}
	}
	return false
}

// CanSubscribe reports whether device id, enabled, may subscribe to filter:
// only if every topic filter can match is matched by one of the device's
// subscribe filters. An invalid filter is refused.
func (r *Registry) CanSubscribe(id, filter string) bool {
	e := r.lookup(id)
	if e == nil || !e.dev.Enabled || validateFilter(filter) != nil {
		return false
	}
	return covered(splitLevels(filter), e.sub)
}
