package adminapi

import (
	"net/http"
	"net/http/pprof"
)

// pprofHandler serves Go's profiles (heap, goroutines, CPU, allocations,
// execution trace) under /api/debug/pprof/, so the admin token guards them
// as it does the rest of /api/: memory and CPU can be looked at on a
// running node (fetch with the bearer token, then `go tool pprof` the
// file). A CPU profile or trace runs for its
// ?seconds= (30 by default), within the admin listener's write timeout.
func pprofHandler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index) // the index, and every named profile (heap, goroutine, allocs, ...)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return http.StripPrefix("/api", m)
}
