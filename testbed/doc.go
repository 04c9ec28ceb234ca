// Package testbed holds black-box scenarios and benchmarks over the wire:
// real clients against ferry, and the peers (Mosquitto, nats-server) run in
// the same session for ratios. It never reaches into ferry's internals
// (the Jepsen suite reads stopped nodes' segment files with ferry/log's
// read-only scanner, as `ferry log dump` does).
//
// The device fleet simulator is in testbed/fleet, the runner of the
// declarative pipeline scenarios (scenarios/*.yaml, run by TestScenarios)
// in testbed/scenario; README.md describes both and the file format, and
// the Jepsen-style suite of replicated partitions (jepsen_*_test.go).
package testbed
