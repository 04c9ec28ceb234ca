package edge

import (
	"errors"
	"fmt"

	"ferry/devices"
	"ferry/ingest/kafka"
)

// kafkaAuth lets the Kafka front end authenticate users and check ACLs
// against the device registry without importing it (kafka.Credentials,
// kafka.ACLs). Changes go to w: the registry for a node alone, the
// cluster's metadata in a cluster.
type kafkaAuth struct {
	r *devices.Registry
	w securityStore
}

func (a kafkaAuth) CheckPlain(user, password string) error {
	if err := a.r.AuthenticateUser(user, password); err != nil {
		return fmt.Errorf("%w: %v", kafka.ErrBadCredentials, err)
	}
	return nil
}

func (a kafkaAuth) SCRAM(mechanism, user string) (kafka.SCRAMCredential, error) {
	c, err := a.r.UserSCRAM(mechanism, user)
	if err != nil {
		return kafka.SCRAMCredential{}, fmt.Errorf("%w: %v", kafka.ErrBadCredentials, err)
	}
	return kafka.SCRAMCredential(c), nil
}

func (a kafkaAuth) SCRAMDecoy(mechanism, user string) kafka.SCRAMCredential {
	return kafka.SCRAMCredential(a.r.SCRAMDecoy(mechanism, user))
}

func (a kafkaAuth) Users() ([]string, error) {
	us, err := a.r.Users()
	names := make([]string, len(us))
	for i, u := range us {
		names[i] = u.Name
	}
	return names, err
}

func (a kafkaAuth) SetSCRAM(mechanism, user string, c kafka.SCRAMCredential) error {
	return a.w.SetUserSCRAM(user, mechanism, devices.SCRAMCredential(c))
}

func (a kafkaAuth) DeleteSCRAM(mechanism, user string) error {
	if err := a.w.DeleteUserSCRAM(user, mechanism); errors.Is(err, devices.ErrUserNotFound) {
		return fmt.Errorf("%w: %v", kafka.ErrBadCredentials, err)
	} else if err != nil {
		return err
	}
	return nil
}

func (a kafkaAuth) Authorize(principal, host, resourceType, name, op string) bool {
	return a.r.AuthorizeKafka(principal, host, resourceType, name, op)
}

func (a kafkaAuth) AuthorizeAny(principal, host, resourceType, op string) bool {
	return a.r.AuthorizeKafkaAny(principal, host, resourceType, op)
}

func (a kafkaAuth) AddACLs(acls []kafka.ACL) error {
	in := make([]devices.KafkaACL, len(acls))
	for i, x := range acls {
		in[i] = devices.KafkaACL(x)
	}
	err := a.w.AddKafkaACLs(in)
	if errors.Is(err, devices.ErrInvalidKafkaACL) {
		return fmt.Errorf("%w: %v", kafka.ErrInvalidACL, err)
	}
	return err
}

func (a kafkaAuth) ACLs(f kafka.ACLFilter) ([]kafka.ACL, error) {
	out, err := a.r.KafkaACLs(devices.KafkaACLFilter(f))
	return fromKafkaACLs(out), err
}

func (a kafkaAuth) DeleteACLs(f kafka.ACLFilter) ([]kafka.ACL, error) {
	out, err := a.w.DeleteKafkaACLs(devices.KafkaACLFilter(f))
	return fromKafkaACLs(out), err
}

func fromKafkaACLs(in []devices.KafkaACL) []kafka.ACL {
	out := make([]kafka.ACL, len(in))
	for i, x := range in {
		out[i] = kafka.ACL(x)
	}
	return out
}
