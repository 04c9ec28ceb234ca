// Package testbed holds black-box scenarios and benchmarks over the wire:
// real clients against ferry, and the peers (Mosquitto, nats-server) run in
// the same session for ratios. It never reaches into ferry's internals.
//
// The device fleet simulator is in testbed/fleet, the runner of the
// declarative pipeline scenarios (scenarios/*.yaml, run by TestScenarios)
// in testbed/scenario; README.md describes both and the file format.
package testbed
