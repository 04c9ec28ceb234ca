// Package adminapi is the admin listener's HTTP surface: the JSON admin
// API under /api/ (its routes, request bodies and the exported view types
// the CLI decodes), the bearer-token guard over every /api/ path, Go's
// profiles behind that guard, /metrics, /healthz, /readyz and the status
// page's routes.
//
// It reaches the node only through Backend, which package edge implements;
// it never imports edge, never opens a listener, never starts a goroutine
// and never decides who may reach the listener (the loopback rule and the
// exposure warnings are edge's). Handlers only translate: every change goes
// through the owner's API (log.Log or the cluster's topic admin,
// kafka.Groups, devices.Registry), which validates it.
//
// The views are built the same way from a running node and from a stopped
// node's files (TopicViews, DeviceViews), so `ferry topics` and `ferry
// devices` print the same JSON online and offline.
package adminapi
