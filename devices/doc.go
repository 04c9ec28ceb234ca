// Package devices will own device identity: ids, credentials (slow-hashed),
// ACL rules, rate limits and presence, kept in bbolt.
//
// It must never read or write the log's files, and never speak a protocol:
// front ends ask it who a client is and what it may do.
package devices
