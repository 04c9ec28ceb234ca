// Package scenario runs declarative pipeline scenarios (testbed/scenarios/*.yaml)
// over real processes on 127.0.0.1: a `ferry full` center, one or more
// `ferry edge` gateways with --auth registry and their devices registered
// with `ferry devices add`, a toxiproxy link between each gateway and the
// center, and per gateway a device fleet and a Kafka producer
// (testbed/fleet). Faults happen on the scenario's schedule: the link
// down, capped, far or reset, a gateway or the center killed and
// restarted. At the end the runner heals what is still broken, waits for
// the center to hold everything the gateways hold, and checks that the
// center's copies hold every acknowledged record exactly once, in order
// per key, identical to the gateways' logs.
//
// The file format is described in testbed/README.md; TestScenarios (in
// testbed) runs every file.
package scenario
