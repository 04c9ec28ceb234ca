package edge

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"ferry/devices"
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
// With Options.AdminToken set, every /api/ route needs the header
// "Authorization: Bearer TOKEN" (401 otherwise); /healthz, /readyz,
// /metrics and the status page stay open.

// maxRequestBody bounds the JSON a request may carry.
const maxRequestBody = 1 << 20

// registerAPI adds the admin API's routes to mux.
func (n *Node) registerAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/status", n.handleStatus)
	mux.HandleFunc("GET /api/cluster", n.handleCluster)
	n.registerTopicsAPI(mux)
	n.registerGroupsAPI(mux)
	n.registerDevicesAPI(mux)
	n.registerUsersAPI(mux)
	// Anything else under /api/ answers JSON too. One pattern per method:
	// a method-less "/api/" would conflict with the status page's "GET /".
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		mux.HandleFunc(m+" /api/", func(w http.ResponseWriter, r *http.Request) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no such endpoint: %s %s (see the README's admin API section)", r.Method, r.URL.Path))
		})
	}
}

// requireToken guards every /api/ path with the bearer token, when one is
// configured.
func (n *Node) requireToken(next http.Handler) http.Handler {
	token := n.opts.AdminToken
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
	case errors.Is(err, flog.ErrTopicExists), errors.Is(err, devices.ErrExists), errors.Is(err, devices.ErrUserExists), errors.Is(err, kafka.ErrGroupNotEmpty):
		return http.StatusConflict
	case errors.Is(err, flog.ErrInvalidTopic), errors.Is(err, flog.ErrInvalidPartitions), errors.Is(err, flog.ErrPartitionLimit), errors.Is(err, flog.ErrInvalidConfig),
		errors.Is(err, devices.ErrInvalidID), errors.Is(err, devices.ErrInvalidFilter), errors.Is(err, devices.ErrInvalidPassword),
		errors.Is(err, devices.ErrInvalidDevice), errors.Is(err, devices.ErrInvalidUser), errors.Is(err, devices.ErrInvalidKafkaACL):
		return http.StatusBadRequest
	case errors.Is(err, flog.ErrClosed), errors.Is(err, devices.ErrClosed):
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
