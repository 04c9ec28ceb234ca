// Package devices owns device identity for a ferry node, and the Kafka
// listener's users and ACLs: which devices exist,
// their credentials (slow-hashed passwords, certificate common names), what
// each may publish and subscribe to (ACLs of MQTT topic filters), how fast it
// may publish (a token bucket per device), and its presence (online or not,
// last seen, messages and bytes received). It is kept in one bbolt file,
// <data-dir>/devices.db (FileName), that only one process may hold: a running
// node, or an offline `ferry devices` command.
//
// It must never import another ferry package, never read or write the log's
// files and never touch the network: front ends (ingest/mqtt) ask it who a
// client is and what it may do, and tell it when a client comes and goes.
//
// # Basics
//
// Open loads every device into memory; reads (Get, List, the ACL checks,
// Authenticate's cache, Allow, the presence counters) are answered from
// memory, and changes (Add, SetPassword, SetACL, SetEnabled, Delete) are
// written to bbolt (one fsynced transaction each) before they take effect.
// Every method is safe for concurrent use.
//
// # Passwords: bcrypt
//
// Passwords are hashed with bcrypt (golang.org/x/crypto/bcrypt, cost
// Options.BcryptCost). argon2id was considered: its strength comes from the
// memory each hash needs (tens of MiB with the usual parameters), and on a
// small gateway a storm of devices reconnecting at once would multiply that
// memory and could take the node down, whereas bcrypt needs a few KiB per hash
// and costs CPU time only. bcrypt reads at most 72 bytes of a password, so
// longer passwords are refused (ErrInvalidPassword) rather than silently
// truncated.
//
// Successful verifications are cached in memory (per device, an HMAC-SHA-256
// of the password under a key drawn at Open), so a device reconnecting with
// the same password costs one hash, not one bcrypt run. SetPassword, disabling
// and Delete drop a device's cache entry. Unknown devices, devices without a
// password and wrong passwords all cost one bcrypt comparison and return the
// same ErrBadCredentials; ErrDisabled is returned only to a caller that gave
// the right password.
//
// # ACLs
//
// A device's ACL is two lists of MQTT topic filters, Publish and Subscribe. A
// level that is exactly "{device}" (DeviceToken) stands for the device's id;
// it is replaced level by level, never inside a longer level, and ids cannot
// contain '/', '+' or '#' or start with '$', so a substituted id is always one
// literal level. CanPublish takes a concrete topic name; CanSubscribe takes a
// filter and allows it only when every topic it can match is matched by the
// ACL's subscribe filters. Topics whose first level starts with '$' are never
// matched by a filter whose first level is a wildcard (the MQTT rule).
//
// # Kafka users and ACLs
//
// The same file keeps the Kafka listener's principals (users.go: User:NAME
// with a bcrypt hash for SASL PLAIN and, per SCRAM mechanism, salt,
// iterations, StoredKey and ServerKey, never the password) and its ACL
// bindings (kafkaacl.go: Kafka's model of principal, host, resource,
// pattern, operation and permission; DENY wins; no binding means no). The
// Kafka front end reaches them only through the interfaces edge wires.
//
// # Presence
//
// Connected, Disconnected and CountIn are called on the hot path of every
// connection and publish: they update in-memory counters only. The registry's
// flusher goroutine writes what changed to bbolt in one transaction every
// Options.PresenceFlushInterval, and Close writes the rest. A device is online
// while it has more connections than disconnections, so a session taken over
// by a new connection stays online whichever of the two events comes first.
// Open marks every device offline: after a crash, "online" is stale.
//
// # Caveats
//
// Presence counters written between the last flush and a crash are lost (at
// most one flush interval's worth); credentials and ACLs are never lost once
// their call has returned.
package devices
