package adminapi

import (
	"net/http"
	"time"

	"ferry/devices"
)

// DeviceView is a device as the admin API and `ferry devices` show it:
// its settings and presence, never its password hash.
type DeviceView struct {
	ID      string `json:"id"`
	Enabled bool   `json:"enabled"`
	Online  bool   `json:"online"`
	// LastSeen is the last connect, disconnect or counted message; null
	// if never seen.
	LastSeen    *time.Time  `json:"last_seen"`
	ConnectedAt *time.Time  `json:"connected_at,omitempty"`
	RemoteAddr  string      `json:"remote_addr,omitempty"`
	MessagesIn  uint64      `json:"messages_in"`
	BytesIn     uint64      `json:"bytes_in"`
	HasPassword bool        `json:"has_password"`
	CertCN      string      `json:"cert_cn,omitempty"`
	ACL         devices.ACL `json:"acl"`
	RateLimit   float64     `json:"rate_limit"`
	Burst       int         `json:"burst"`
	CreatedAt   time.Time   `json:"created_at"`
}

// NewDeviceView joins a device and its presence.
func NewDeviceView(d devices.Device, p devices.Presence) DeviceView {
	v := DeviceView{ID: d.ID, Enabled: d.Enabled, Online: p.Online, RemoteAddr: p.RemoteAddr, MessagesIn: p.MessagesIn, BytesIn: p.BytesIn,
		HasPassword: len(d.PasswordHash) > 0, CertCN: d.CertCN, ACL: d.ACL, RateLimit: d.RateLimit, Burst: d.Burst, CreatedAt: d.CreatedAt}
	if v.ACL.Publish == nil {
		v.ACL.Publish = []string{}
	}
	if v.ACL.Subscribe == nil {
		v.ACL.Subscribe = []string{}
	}
	if !p.LastSeen.IsZero() {
		t := p.LastSeen.UTC()
		v.LastSeen = &t
	}
	if p.Online && !p.ConnectedAt.IsZero() {
		t := p.ConnectedAt.UTC()
		v.ConnectedAt = &t
	}
	return v
}

// DeviceViews lists the registry's devices with their presence, by id.
func DeviceViews(r *devices.Registry) ([]DeviceView, error) {
	ds, err := r.List()
	if err != nil {
		return nil, err
	}
	pres, err := r.PresenceAll()
	if err != nil {
		return nil, err
	}
	out := make([]DeviceView, 0, len(ds))
	for _, d := range ds {
		out = append(out, NewDeviceView(d, pres[d.ID]))
	}
	return out, nil
}

// DescribeDevice is one device of the registry with its presence.
func DescribeDevice(r *devices.Registry, id string) (DeviceView, error) {
	d, err := r.Get(id)
	if err != nil {
		return DeviceView{}, err
	}
	p, err := r.Presence(id)
	if err != nil {
		return DeviceView{}, err
	}
	return NewDeviceView(d, p), nil
}

// AddDeviceRequest is the body of POST /api/devices. Enabled defaults to
// true; an empty password makes a certificate-only device.
type AddDeviceRequest struct {
	ID        string      `json:"id"`
	Password  string      `json:"password,omitempty"`
	CertCN    string      `json:"cert_cn,omitempty"`
	ACL       devices.ACL `json:"acl"`
	RateLimit float64     `json:"rate_limit,omitempty"`
	Burst     int         `json:"burst,omitempty"`
	Enabled   *bool       `json:"enabled,omitempty"`
}

// ChangeDeviceRequest is the body of PATCH /api/devices/{id}: the fields
// given are changed, the others kept. A password of "" removes it.
type ChangeDeviceRequest struct {
	Enabled  *bool        `json:"enabled,omitempty"`
	Password *string      `json:"password,omitempty"`
	ACL      *devices.ACL `json:"acl,omitempty"`
}

var errNoRegistry = requestError{http.StatusNotFound, "this node has no device registry (its MQTT listeners are off)"}

// registerDevicesAPI serves the device registry. A node runs one whenever
// MQTT is on, under --auth none too (it keeps the presence of registered
// devices, and devices can be added before switching to --auth registry).
func (s *server) registerDevicesAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/devices", s.registryHandler(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		vs, err := DeviceViews(reg)
		if err == nil {
			writeJSON(w, http.StatusOK, vs)
		}
		return err
	}))
	mux.HandleFunc("GET /api/devices/{id}", s.registryHandler(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		return answerDevice(w, reg, http.StatusOK, r.PathValue("id"))
	}))
	mux.HandleFunc("POST /api/devices", s.registryHandler(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		var req AddDeviceRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		d := devices.Device{ID: req.ID, Enabled: req.Enabled == nil || *req.Enabled, CertCN: req.CertCN, ACL: req.ACL,
			RateLimit: req.RateLimit, Burst: req.Burst}
		if err := reg.Add(d, req.Password); err != nil {
			return err
		}
		return answerDevice(w, reg, http.StatusCreated, req.ID)
	}))
	mux.HandleFunc("PATCH /api/devices/{id}", s.registryHandler(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		var req ChangeDeviceRequest
		if err := decodeBody(r, &req); err != nil {
			return err
		}
		if req.Enabled == nil && req.Password == nil && req.ACL == nil {
			return badRequest(`nothing to change: give "enabled", "password" or "acl"`)
		}
		id := r.PathValue("id")
		if _, err := reg.Get(id); err != nil {
			return err
		}
		if req.ACL != nil {
			if err := reg.SetACL(id, req.ACL.Publish, req.ACL.Subscribe); err != nil {
				return err
			}
		}
		if req.Password != nil {
			if err := reg.SetPassword(id, *req.Password); err != nil {
				return err
			}
		}
		if req.Enabled != nil {
			if err := reg.SetEnabled(id, *req.Enabled); err != nil {
				return err
			}
		}
		return answerDevice(w, reg, http.StatusOK, id)
	}))
	mux.HandleFunc("DELETE /api/devices/{id}", s.registryHandler(func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error {
		if err := reg.Delete(r.PathValue("id")); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}))
}

// registryHandler serves h with the node's device registry, or answers
// errNoRegistry when the node has none; an error h returns is the answer.
func (s *server) registryHandler(h func(w http.ResponseWriter, r *http.Request, reg *devices.Registry) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		reg := s.b.Devices()
		if reg == nil {
			writeErr(w, errNoRegistry)
			return
		}
		if err := h(w, r, reg); err != nil {
			writeErr(w, err)
		}
	}
}

func answerDevice(w http.ResponseWriter, reg *devices.Registry, code int, id string) error {
	v, err := DescribeDevice(reg, id)
	if err == nil {
		writeJSON(w, code, v)
	}
	return err
}
