package edge

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ferry/edge/statuspage"
)

// adminHandler serves the admin listener: metrics, health, and the JSON
// admin API. Each area registers its routes here.
func (n *Node) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(n.registry, promhttp.HandlerOpts{}))
	mux.Handle("GET /", statuspage.Handler()) // the status page (edge/statuspage)
	mux.Handle("GET /api/history", n.status)  // its tiles' and charts' samples
	mux.HandleFunc("GET /api/mirror", func(w http.ResponseWriter, r *http.Request) {
		switch {
		case n.sender != nil:
			writeJSON(w, http.StatusOK, n.sender.Status())
		case n.receiver != nil: // a center: its copies of each edge
			writeJSON(w, http.StatusOK, n.receiver.Status())
		default:
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "this node mirrors nothing (no --mirror-to) and receives nothing (no --mirror-addr)"})
		}
	})
	mux.HandleFunc("GET /api/mirror/edges", func(w http.ResponseWriter, r *http.Request) {
		if n.receiver == nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "this node receives nothing from edges (no --mirror-addr)"})
			return
		}
		writeJSON(w, http.StatusOK, n.receiver.Status())
	})
	n.registerAPI(mux)
	mux.Handle("GET /api/debug/pprof/", pprofHandler()) // behind the token, as all of /api/
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !n.ready.Load() {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "not ready"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "topics": len(n.log.Topics())})
	})
	return n.requireToken(mux)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
