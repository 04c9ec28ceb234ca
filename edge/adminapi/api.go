package adminapi

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"ferry/devices"
	"ferry/edge/cluster"
	"ferry/edge/statuspage"
	"ferry/ingest/kafka"
	flog "ferry/log"
)

// The admin API: JSON over HTTP on the admin listener, under /api/.
//
//	GET    /api/status                          the node at a glance (StatusView)
//	GET    /api/topics                          every topic ([]TopicView)
//	POST   /api/topics                          create {"name","partitions","configs"}
//	GET    /api/topics/{name}                   one topic, with its effective configs
//	DELETE /api/topics/{name}                   delete it and its data
//	PATCH  /api/topics/{name}/configs           {"set":{...},"delete":[...]}, live
//	POST   /api/topics/{name}/partitions        {"partitions":N}: grow to N
//	GET    /api/groups                          consumer groups ([]GroupSummary)
//	GET    /api/groups/{id}                     members, assignments, offsets, lag (GroupView)
//	DELETE /api/groups/{id}                     delete an empty group's offsets
//	POST   /api/groups/{id}/reset-offsets       {"topic","to","partitions","dry_run"}, empty groups only
//	GET    /api/devices                         the device registry with presence ([]DeviceView)
//	POST   /api/devices                         add {"id","password","cert_cn","acl","rate_limit","burst","enabled"}
//	GET    /api/devices/{id}                    one device
//	PATCH  /api/devices/{id}                    {"enabled","password","acl"}
//	DELETE /api/devices/{id}                    delete it
//	GET    /api/users                           Kafka users ([]UserView)
//	POST   /api/users                           add {"name","password"}
//	PATCH  /api/users/{name}                    {"password"}
//	DELETE /api/users/{name}                    delete it
//	GET    /api/kafka-acls                      Kafka ACL bindings ([]devices.KafkaACL); query: principal, resource_type, resource_name, pattern_type, operation, permission
//	POST   /api/kafka-acls                      add [devices.KafkaACL]
//	DELETE /api/kafka-acls                      delete what the query selects (at least one field), answers the deleted
//	GET    /api/mirror                          the mirror sender's status (mirror.Status)
//	GET    /api/cluster                         the cluster as this node sees it (ClusterView; 404 for a node alone)
//
// Successes answer 200 (201 for a creation, 204 with no body for a
// deletion); errors answer {"error":"message"} with a fitting status.
// With Config.Token (the node's --admin-token) set, every /api/ route needs the header
// "Authorization: Bearer TOKEN" (401 otherwise); /healthz, /readyz,
// /metrics and the status page stay open.

// maxRequestBody bounds the JSON a request may carry.
const maxRequestBody = 1 << 20

// Config is what the admin listener serves besides the backend.
type Config struct {
	// Token, when set, guards every /api/ path (edge.Options.AdminToken).
	Token string
	// Metrics is what GET /metrics exposes (the node's registry).
	Metrics prometheus.Gatherer
	// History serves GET /api/history, the status page's samples
	// (statuspage.Sampler); nil: not served.
	History http.Handler
}

// server serves the admin listener's routes from b.
type server struct {
	b   Backend
	cfg Config
}

// Handler serves the admin listener: metrics, health, the status page and
// the JSON admin API, every /api/ path behind cfg.Token.
func Handler(b Backend, cfg Config) http.Handler {
	s := &server{b: b, cfg: cfg}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{}))
	mux.Handle("GET /", statuspage.Handler()) // the status page (edge/statuspage)
	if cfg.History != nil {
		mux.Handle("GET /api/history", cfg.History) // its tiles' and charts' samples
	}
	mux.HandleFunc("GET /api/mirror", s.handleMirror)
	mux.HandleFunc("GET /api/mirror/edges", s.handleMirrorEdges)
	s.registerAPI(mux)
	mux.Handle("GET /api/debug/pprof/", pprofHandler()) // behind the token, as all of /api/
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// A damaged partition makes the node not ready: consumers of it
		// stop at the damage until an operator cuts it (ferry log
		// truncate), and a load balancer or an orchestrator should know.
		damaged := damagedViews(b.Log())
		if !b.Node().Ready || len(damaged) > 0 {
			body := map[string]any{"status": "not ready"}
			if len(damaged) > 0 {
				body["damaged"] = damaged
			}
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "topics": len(b.Log().Topics())})
	})
	return requireToken(cfg.Token, mux)
}

func (s *server) handleMirror(w http.ResponseWriter, r *http.Request) {
	if st, ok := s.b.MirrorSender(); ok {
		writeJSON(w, http.StatusOK, st)
		return
	}
	if st, ok := s.b.MirrorReceiver(); ok { // a center: its copies of each edge
		writeJSON(w, http.StatusOK, st)
		return
	}
	writeJSON(w, http.StatusNotFound, map[string]any{"error": "this node mirrors nothing (no --mirror-to) and receives nothing (no --mirror-addr)"})
}

func (s *server) handleMirrorEdges(w http.ResponseWriter, r *http.Request) {
	st, ok := s.b.MirrorReceiver()
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "this node receives nothing from edges (no --mirror-addr)"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// registerAPI adds the admin API's routes to mux.
func (s *server) registerAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/status", s.handleStatus)
	mux.HandleFunc("GET /api/cluster", s.handleCluster)
	s.registerClusterOpsAPI(mux)
	s.registerTopicsAPI(mux)
	s.registerGroupsAPI(mux)
	s.registerDevicesAPI(mux)
	s.registerUsersAPI(mux)
	// Anything else under /api/ answers JSON too. One pattern per method:
	// a method-less "/api/" would conflict with the status page's "GET /".
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		mux.HandleFunc(m+" /api/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s (see docs/api.md)", r.Method, r.URL.Path))
		})
	}
}

// requireToken guards every /api/ path with the bearer token, when one is
// configured.
func requireToken(token string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api" || strings.HasPrefix(r.URL.Path, "/api/") {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="ferry"`)
				msg := "this node's admin API needs a token: Authorization: Bearer TOKEN (ferry --admin-token, FERRY_ADMIN_TOKEN)"
				if ok {
					msg = "wrong admin token"
				}
				writeError(w, http.StatusUnauthorized, msg)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": msg}.
func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// writeErr answers err with the status its kind calls for.
func writeErr(w http.ResponseWriter, err error) {
	writeError(w, statusFor(err), err.Error())
}

// statusFor maps the errors of the log, the coordinator and the registry
// to HTTP statuses.
func statusFor(err error) int {
	var re requestError
	switch {
	case errors.As(err, &re):
		return re.code
	case errors.Is(err, flog.ErrUnknownTopic), errors.Is(err, flog.ErrUnknownPartition),
		errors.Is(err, kafka.ErrUnknownGroup), errors.Is(err, devices.ErrNotFound), errors.Is(err, devices.ErrUserNotFound):
		return http.StatusNotFound
	case errors.Is(err, cluster.ErrVoterChange):
		return http.StatusConflict
	case errors.Is(err, flog.ErrTopicExists), errors.Is(err, devices.ErrExists), errors.Is(err, devices.ErrUserExists), errors.Is(err, kafka.ErrGroupNotEmpty):
		return http.StatusConflict
	case errors.Is(err, flog.ErrInvalidTopic), errors.Is(err, flog.ErrInvalidPartitions), errors.Is(err, flog.ErrPartitionLimit), errors.Is(err, flog.ErrInvalidConfig),
		errors.Is(err, devices.ErrInvalidID), errors.Is(err, devices.ErrInvalidFilter), errors.Is(err, devices.ErrInvalidPassword),
		errors.Is(err, devices.ErrInvalidDevice), errors.Is(err, devices.ErrInvalidUser), errors.Is(err, devices.ErrInvalidKafkaACL):
		return http.StatusBadRequest
	case errors.Is(err, flog.ErrClosed), errors.Is(err, devices.ErrClosed), errors.Is(err, cluster.ErrNoController):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// requestError is an error with its own status (a bad request body, a
// part the node does not run).
type requestError struct {
	code int
	msg  string
}

func (e requestError) Error() string { return e.msg }

func badRequest(format string, a ...any) error {
	return requestError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

// decodeBody reads a request's JSON body into v: unknown fields, trailing
// data and bodies over maxRequestBody are bad requests.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return badRequest("the request needs a JSON body")
		}
		return badRequest("request body: %v", err)
	}
	if dec.More() {
		return badRequest("request body: one JSON value expected")
	}
	return nil
}
