package edge

import (
	"errors"
	"fmt"

	"ferry/devices"
	"ferry/ingest/mqtt"
)

// Auth modes of the MQTT front end.
const (
	// AuthNone accepts every client (the default for make run; logged as
	// a warning). Devices still appear in the registry's presence when
	// they are registered.
	AuthNone = "none"
	// AuthRegistry accepts only devices in the registry, by password or
	// client-certificate common name, and applies their ACLs and rates.
	AuthRegistry = "registry"
)

// registryAuth lets the MQTT front end authenticate against the device
// registry without importing it.
type registryAuth struct{ r *devices.Registry }

// Authenticate: a client certificate (mutual TLS) identifies the device by
// its common name, and a user name given beside it must be the same device;
// otherwise the user name is the device id and the password is checked.
func (a registryAuth) Authenticate(username string, password []byte, certCN string) (string, error) {
	if certCN != "" {
		id, err := a.r.AuthenticateCert(certCN)
		if err != nil {
			return "", mapAuthErr(err)
		}
		if username != "" && username != id {
			return "", fmt.Errorf("%w: user name %q is not the certificate's device %q", mqtt.ErrBadCredentials, username, id)
		}
		return id, nil
	}
	if err := a.r.Authenticate(username, string(password)); err != nil {
		return "", mapAuthErr(err)
	}
	return username, nil
}

func mapAuthErr(err error) error {
	if errors.Is(err, devices.ErrDisabled) {
		return fmt.Errorf("%w: %v", mqtt.ErrNotAuthorized, err)
	}
	return fmt.Errorf("%w: %v", mqtt.ErrBadCredentials, err)
}

func (a registryAuth) CanPublish(device, topic string) bool { return a.r.CanPublish(device, topic) }
func (a registryAuth) CanSubscribe(device, filter string) bool {
	return a.r.CanSubscribe(device, filter)
}
func (a registryAuth) Allow(device string) bool { return a.r.Allow(device) }
