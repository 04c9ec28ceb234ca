package devices

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// FileName is the registry's file name inside a node's data directory.
const FileName = "devices.db"

var (
	bucketDevices  = []byte("devices")  // id → deviceRecord (JSON)
	bucketPresence = []byte("presence") // id → Presence (JSON)
)

// Device is one registered device. The zero values of the optional fields
// mean: no certificate identity, empty ACLs (nothing allowed), no rate limit.
type Device struct {
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
	// PasswordHash is the bcrypt hash of the device's password, empty for a
	// device that authenticates by certificate only. Get and List fill it; Add
	// ignores it (it hashes the password it is given). It is never put in JSON.
	PasswordHash []byte `json:"-"`
	// CertCN is the common name of the device's client certificate, for mTLS
	// identity (AuthenticateCert); empty if it has none. Unique across devices.
	CertCN string `json:"cert_cn,omitempty"`
	ACL    ACL    `json:"acl"`
	// RateLimit is the sustained publish rate in messages per second that
	// Allow admits; 0 is unlimited.
	RateLimit float64 `json:"rate_limit"`
	// Burst is how many messages Allow admits at once; below 1 with a
	// RateLimit it is taken as the rate rounded up (at least 1).
	Burst     int       `json:"burst"`
	CreatedAt time.Time `json:"created_at"`
}

// ACL lists the MQTT topic filters a device may publish to and subscribe to.
// A level that is exactly "{device}" stands for the device's id.
type ACL struct {
	Publish   []string `json:"publish"`
	Subscribe []string `json:"subscribe"`
}

func (d Device) clone() Device {
	d.PasswordHash = slices.Clone(d.PasswordHash)
	d.ACL.Publish = append([]string{}, d.ACL.Publish...)
	d.ACL.Subscribe = append([]string{}, d.ACL.Subscribe...)
	return d
}

// deviceRecord is a Device as stored: the same JSON plus the hash.
type deviceRecord struct {
	Device
	PasswordHash []byte `json:"password_hash,omitempty"`
}

// Options configures a Registry. Zero fields take DefaultOptions' values.
type Options struct {
	// LockTimeout is how long Open waits for another process to release the
	// file before it returns ErrLocked.
	LockTimeout time.Duration
	// PresenceFlushInterval is how often changed presence is written to the
	// file. Negative: only on Close.
	PresenceFlushInterval time.Duration
	// BcryptCost is the bcrypt cost of new password hashes.
	BcryptCost int
	// SCRAMIterations is the PBKDF2 iteration count of new Kafka users'
	// SCRAM credentials, at least MinSCRAMIterations.
	SCRAMIterations int
	// Now is the clock (CreatedAt, CountIn's last-seen time).
	Now func() time.Time
	// Logger receives presence flush failures.
	Logger *slog.Logger

	afterFlush func(written int, err error) // test hook: called by the flusher after each periodic flush
}

// DefaultOptions returns the defaults: a 1 s lock timeout, presence flushed
// every 5 s, bcrypt.DefaultCost, MinSCRAMIterations, the system clock and
// slog.Default().
func DefaultOptions() Options {
	return Options{
		LockTimeout:           time.Second,
		PresenceFlushInterval: 5 * time.Second,
		BcryptCost:            bcrypt.DefaultCost,
		SCRAMIterations:       MinSCRAMIterations,
		Now:                   time.Now,
		Logger:                slog.Default(),
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.LockTimeout == 0 {
		o.LockTimeout = d.LockTimeout
	}
	if o.PresenceFlushInterval == 0 {
		o.PresenceFlushInterval = d.PresenceFlushInterval
	}
	if o.BcryptCost == 0 {
		o.BcryptCost = d.BcryptCost
	}
	if o.SCRAMIterations == 0 {
		o.SCRAMIterations = d.SCRAMIterations
	}
	if o.Now == nil {
		o.Now = d.Now
	}
	if o.Logger == nil {
		o.Logger = d.Logger
	}
	return o
}

// Registry is the device registry of one node. Create it with Open.
type Registry struct {
	db     *bolt.DB
	opts   Options
	logger *slog.Logger

	// wmu serializes changes and presence flushes: each writes bbolt, then
	// installs entries under mu. Lock order: wmu → mu.
	wmu    sync.Mutex
	closed bool // guarded by wmu

	mu     sync.RWMutex               // guards devs, byCN and users (the maps, not the entries), and userEntry.verified
	devs   map[string]*entry          // id → entry; an entry is replaced, never changed, except for its atomics
	byCN   map[string]string          // CertCN → id
	users  map[string]*userEntry      // Kafka user name → entry (users.go)
	acls   atomic.Pointer[[]KafkaACL] // Kafka ACL bindings, sorted; replaced whole under wmu (kafkaacl.go)
	isShut atomic.Bool                // set by Close; read by the in-memory readers

	authKey   []byte // HMAC key for the verification cache, drawn at Open
	decoyKey  []byte // keys unknown Kafka users' decoy SCRAM salts, kept in the file (users.go)
	dummyOnce sync.Once
	dummyHash []byte // compared against when there is no hash to compare with; made on first use
	compares  atomic.Int64

	stop chan struct{} // closed by Close to stop the flusher
	done chan struct{} // closed when the flusher has returned
}

// entry is the in-memory form of one device. Changing a device installs a new
// entry: a reader holding the old one sees a consistent old device.
type entry struct {
	dev      Device
	pub, sub [][]string // compiled ACL filters
	// verified holds the HMAC of the last password that verified; nil if
	// none. A new entry starts empty unless the change keeps credentials.
	verified atomic.Pointer[[32]byte]
	limiter  atomic.Pointer[rate.Limiter] // created by the first Allow
	pres     *presence                    // shared by every entry of one device
}

// Open opens the registry file at path, creating it if needed, loads every
// device and marks every device offline. Only one process may hold the file:
// if another does for longer than opts.LockTimeout, Open returns ErrLocked.
func Open(path string, opts Options) (*Registry, error) {
	opts = opts.withDefaults()
	if opts.BcryptCost < bcrypt.MinCost || opts.BcryptCost > bcrypt.MaxCost {
		return nil, fmt.Errorf("devices: BcryptCost %d outside %d..%d", opts.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if opts.SCRAMIterations < MinSCRAMIterations {
		return nil, fmt.Errorf("devices: SCRAMIterations %d below %d", opts.SCRAMIterations, MinSCRAMIterations)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrLocked, path)
	}
	if err != nil {
		return nil, fmt.Errorf("opening device registry: %w", err)
	}
	r := &Registry{
		db: db, opts: opts, logger: opts.Logger.With("component", "devices"),
		devs: map[string]*entry{}, byCN: map[string]string{}, users: map[string]*userEntry{},
		authKey: make([]byte, 32), stop: make(chan struct{}), done: make(chan struct{}),
	}
	rand.Read(r.authKey)
	if err := db.Update(r.load); err != nil {
		db.Close()
		return nil, fmt.Errorf("loading device registry %s: %w", path, err)
	}
	if opts.PresenceFlushInterval > 0 {
		go r.flushLoop(opts.PresenceFlushInterval)
	} else {
		close(r.done)
	}
	return r, nil
}

// load reads every device and its presence, and stores every presence as
// offline.
func (r *Registry) load(tx *bolt.Tx) error {
	devs, err := tx.CreateBucketIfNotExists(bucketDevices)
	if err != nil {
		return err
	}
	pres, err := tx.CreateBucketIfNotExists(bucketPresence)
	if err != nil {
		return err
	}
	if err := r.loadUsers(tx); err != nil {
		return err
	}
	if err := r.loadKafkaACLs(tx); err != nil {
		return err
	}
	err = devs.ForEach(func(k, v []byte) error {
		var rec deviceRecord
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("device %q: %w", k, err)
		}
		d := rec.Device
		d.PasswordHash = rec.PasswordHash
		p := &presence{}
		if pv := pres.Get(k); pv != nil {
			var saved Presence
			if err := json.Unmarshal(pv, &saved); err != nil {
				return fmt.Errorf("presence of %q: %w", k, err)
			}
			p.restore(saved)
		}
		r.install(newEntry(d, p))
		return nil
	})
	if err != nil {
		return err
	}
	// A crash leaves "online" behind; nobody is connected to a node that is
	// only now opening its registry.
	for id, e := range r.devs {
		if err := putJSON(pres, id, e.pres.snapshot()); err != nil {
			return err
		}
	}
	return nil
}

func newEntry(d Device, p *presence) *entry {
	return &entry{dev: d, pub: compileFilters(d.ACL.Publish, d.ID), sub: compileFilters(d.ACL.Subscribe, d.ID), pres: p}
}

// install puts e in the maps. Callers hold wmu (or are Open).
func (r *Registry) install(e *entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old := r.devs[e.dev.ID]; old != nil && old.dev.CertCN != "" {
		delete(r.byCN, old.dev.CertCN)
	}
	r.devs[e.dev.ID] = e
	if e.dev.CertCN != "" {
		r.byCN[e.dev.CertCN] = e.dev.ID
	}
}

func (r *Registry) lookup(id string) *entry {
	r.mu.RLock()
	e := r.devs[id]
	r.mu.RUnlock()
	return e
}

func putJSON(b *bolt.Bucket, id string, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), buf)
}

func putDevice(tx *bolt.Tx, d Device) error {
	return putJSON(tx.Bucket(bucketDevices), d.ID, deviceRecord{Device: d, PasswordHash: d.PasswordHash})
}

// Close stops the presence flusher, writes the presence not yet written and
// closes the file. Calls after the first return nil.
func (r *Registry) Close() error {
	r.wmu.Lock()
	if r.closed {
		r.wmu.Unlock()
		return nil
	}
	r.closed = true
	r.isShut.Store(true)
	r.wmu.Unlock()
	close(r.stop)
	<-r.done
	_, err := r.flushPresence()
	if cerr := r.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// Add registers d, enabled as d.Enabled says, with the bcrypt hash of
// password. An empty password makes a device that cannot authenticate by
// password (certificate only). d.PasswordHash is ignored; a zero CreatedAt is
// set to now.
func (r *Registry) Add(d Device, password string) error {
	if err := ValidateID(d.ID); err != nil {
		return err
	}
	if err := validateDevice(&d); err != nil {
		return err
	}
	hash, err := r.hash(password)
	if err != nil {
		return err
	}
	d = d.clone()
	d.PasswordHash = hash
	if d.CreatedAt.IsZero() {
		d.CreatedAt = r.opts.Now().UTC()
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.lookup(d.ID) != nil {
		return fmt.Errorf("%w: %q", ErrExists, d.ID)
	}
	if d.CertCN != "" {
		r.mu.RLock()
		other, taken := r.byCN[d.CertCN]
		r.mu.RUnlock()
		if taken {
			return fmt.Errorf("%w: certificate CN %q is used by device %q", ErrExists, d.CertCN, other)
		}
	}
	p := &presence{}
	err = r.db.Update(func(tx *bolt.Tx) error {
		if err := putDevice(tx, d); err != nil {
			return err
		}
		return putJSON(tx.Bucket(bucketPresence), d.ID, p.snapshot())
	})
	if err != nil {
		return err
	}
	r.install(newEntry(d, p))
	return nil
}

func validateDevice(d *Device) error {
	for _, f := range slices.Concat(d.ACL.Publish, d.ACL.Subscribe) {
		if err := ValidateFilter(f); err != nil {
			return err
		}
	}
	switch {
	case d.RateLimit < 0 || d.RateLimit != d.RateLimit:
		return fmt.Errorf("%w: rate limit %v", ErrInvalidDevice, d.RateLimit)
	case d.Burst < 0:
		return fmt.Errorf("%w: burst %d", ErrInvalidDevice, d.Burst)
	case strings.IndexByte(d.CertCN, 0) >= 0:
		return fmt.Errorf("%w: certificate CN contains NUL", ErrInvalidDevice)
	}
	return nil
}

// hash returns the bcrypt hash of password, nil for an empty one.
func (r *Registry) hash(password string) ([]byte, error) {
	if password == "" {
		return nil, nil
	}
	if len(password) > 72 {
		return nil, fmt.Errorf("%w: longer than bcrypt's 72 bytes", ErrInvalidPassword)
	}
	return bcrypt.GenerateFromPassword([]byte(password), r.opts.BcryptCost)
}

// Get returns device id.
func (r *Registry) Get(id string) (Device, error) {
	if r.isShut.Load() {
		return Device{}, ErrClosed
	}
	e := r.lookup(id)
	if e == nil {
		return Device{}, errNotFound(id)
	}
	return e.dev.clone(), nil
}

// List returns every device, sorted by id.
func (r *Registry) List() ([]Device, error) {
	if r.isShut.Load() {
		return nil, ErrClosed
	}
	r.mu.RLock()
	out := make([]Device, 0, len(r.devs))
	for _, e := range r.devs {
		out = append(out, e.dev.clone())
	}
	r.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// change applies fn to a copy of device id, stores the result and installs
// it. keepCredentials carries the verification cache and the rate limiter
// over to the new entry.
func (r *Registry) change(id string, keepCredentials bool, fn func(d *Device) error) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.lookup(id)
	if old == nil {
		return errNotFound(id)
	}
	d := old.dev.clone()
	if err := fn(&d); err != nil {
		return err
	}
	if err := r.db.Update(func(tx *bolt.Tx) error { return putDevice(tx, d) }); err != nil {
		return err
	}
	e := newEntry(d, old.pres)
	if keepCredentials {
		e.verified.Store(old.verified.Load())
	}
	if d.RateLimit == old.dev.RateLimit && d.Burst == old.dev.Burst {
		e.limiter.Store(old.limiter.Load())
	}
	r.install(e)
	return nil
}

// SetEnabled enables or disables device id. Disabling drops its cached
// verification: its next Authenticate, even with the right password, returns
// ErrDisabled.
func (r *Registry) SetEnabled(id string, enabled bool) error {
	return r.change(id, enabled, func(d *Device) error {
		d.Enabled = enabled
		return nil
	})
}

// SetPassword replaces device id's password (empty: no password) and drops its
// cached verification.
func (r *Registry) SetPassword(id, password string) error {
	hash, err := r.hash(password)
	if err != nil {
		return err
	}
	return r.change(id, false, func(d *Device) error {
		d.PasswordHash = hash
		return nil
	})
}

// SetACL replaces device id's publish and subscribe filters.
func (r *Registry) SetACL(id string, publish, subscribe []string) error {
	for _, f := range slices.Concat(publish, subscribe) {
		if err := ValidateFilter(f); err != nil {
			return err
		}
	}
	return r.change(id, true, func(d *Device) error {
		d.ACL = ACL{Publish: slices.Clone(publish), Subscribe: slices.Clone(subscribe)}
		return nil
	})
}

// Delete removes device id, its presence and its cached verification.
func (r *Registry) Delete(id string) error {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	if r.closed {
		return ErrClosed
	}
	old := r.lookup(id)
	if old == nil {
		return errNotFound(id)
	}
	err := r.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketDevices).Delete([]byte(id)); err != nil {
			return err
		}
		return tx.Bucket(bucketPresence).Delete([]byte(id))
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	delete(r.devs, id)
	if old.dev.CertCN != "" && r.byCN[old.dev.CertCN] == id {
		delete(r.byCN, old.dev.CertCN)
	}
	r.mu.Unlock()
	return nil
}

func errNotFound(id string) error { return fmt.Errorf("%w: %q", ErrNotFound, id) }
