// Package testbed holds black-box scenarios and benchmarks over the wire:
// real clients against ferry, and the peers (Mosquitto, nats-server) run in
// the same session for ratios. It never reaches into ferry's internals.
package testbed
