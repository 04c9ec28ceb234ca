package adminapi

import (
	"net/http"

	"ferry/devices"
)

// UserView is a Kafka user as the admin API and `ferry users` show it:
// never a secret.
type UserView = devices.User

// AddUserRequest is the body of POST /api/users.
type AddUserRequest struct {
	Name     string `json:"name"`
	Password string `json:"password"`
}

// ChangeUserRequest is the body of PATCH /api/users/{name}.
type ChangeUserRequest struct {
	Password string `json:"password"`
}

// KafkaACLFilter reads an ACL filter from a query: principal, host,
// resource_type, resource_name, pattern_type, operation, permission.
func KafkaACLFilter(q map[string][]string) devices.KafkaACLFilter {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	f := devices.KafkaACLFilter{Principal: get("principal"), Host: get("host"), ResourceType: get("resource_type"),
		PatternType: get("pattern_type"), Operation: get("operation"), Permission: get("permission")}
	if v, ok := q["resource_name"]; ok && len(v) > 0 {
		f.ResourceName = &v[0]
	}
	return f
}

// registerUsersAPI serves the Kafka users and ACLs of the registry (there
// when MQTT or Kafka SASL is on).
func (s *server) registerUsersAPI(mux *http.ServeMux) {
	with := s.registryHandler
	mux.HandleFunc("GET /api/users", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		us, err := reg.Users()
		if err == nil {
			writeJSON(w, http.StatusOK, us)
		}
		return err
	}))
	mux.HandleFunc("POST /api/users", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		var req AddUserRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		if err := s.userStore(reg).AddUser(req.Name, req.Password); err != nil {
			return err
		}
		return answerUser(w, reg, http.StatusCreated, req.Name)
	}))
	mux.HandleFunc("PATCH /api/users/{name}", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		var req ChangeUserRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		if err := s.userStore(reg).SetUserPassword(r.PathValue("name"), req.Password); err != nil {
			return err
		}
		return answerUser(w, reg, http.StatusOK, r.PathValue("name"))
	}))
	mux.HandleFunc("DELETE /api/users/{name}", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		if err := s.userStore(reg).DeleteUser(r.PathValue("name")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
	mux.HandleFunc("GET /api/kafka-acls", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		acls, err := reg.KafkaACLs(KafkaACLFilter(r.URL.Query()))
		if err == nil {
			writeJSON(w, http.StatusOK, acls)
		}
		return err
	}))
	mux.HandleFunc("POST /api/kafka-acls", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		var acls []devices.KafkaACL
		if err := decodeBody(r, &acls); err != nil {
			return err
		}
		if err := s.userStore(reg).AddKafkaACLs(acls); err != nil {
			return err
		}
		writeJSON(w, http.StatusCreated, acls)
		return nil
	}))
	mux.HandleFunc("DELETE /api/kafka-acls", with(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		if len(r.URL.Query()) == 0 {
			return badRequest("give at least one filter field (principal, resource_type, resource_name, ...): an empty filter would delete every ACL")
		}
		deleted, err := s.userStore(reg).DeleteKafkaACLs(KafkaACLFilter(r.URL.Query()))
		if err == nil {
			writeJSON(w, http.StatusOK, deleted)
		}
		return err
	}))
}

// userStore is where the users routes' changes go: the cluster's
// metadata in a cluster, else the registry.
func (s *server) userStore(reg *devices.Registry) UserStore {
	if u := s.b.UserChanges(); u != nil {
		return u
	}
	return reg
}

// answerUser answers with the user's view (code: its status), as POST and
// PATCH do.
func answerUser(w http.ResponseWriter, reg *devices.Registry, code int, name string) error {
	u, err := reg.GetUser(name)
	if err == nil {
		writeJSON(w, code, u)
	}
	return err
}
