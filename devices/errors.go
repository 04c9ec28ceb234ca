package devices

import "errors"

// Sentinel errors. Callers compare with errors.Is; the wrapped message names
// the device, filter or file concerned.
var (
	// ErrNotFound is returned when no device has the given id.
	ErrNotFound = errors.New("device not found")

	// ErrExists is returned by Add when the id is taken, or when another device
	// already uses the certificate common name.
	ErrExists = errors.New("device already exists")

	// ErrInvalidID is returned when a device id is empty, longer than 128 bytes,
	// not UTF-8, contains '/', '+', '#' or NUL, or starts with '$'.
	ErrInvalidID = errors.New("invalid device id")

	// ErrInvalidFilter is returned by Add and SetACL when an ACL entry is not a
	// valid MQTT topic filter, or uses "{device}" inside a longer level.
	ErrInvalidFilter = errors.New("invalid topic filter")

	// ErrInvalidPassword is returned when a password to store is longer than
	// the 72 bytes bcrypt reads, or is empty for a Kafka user.
	ErrInvalidPassword = errors.New("invalid password")

	// ErrInvalidDevice is returned by Add when a field other than the id is out
	// of range: a negative RateLimit or Burst, or a CertCN with a NUL byte.
	ErrInvalidDevice = errors.New("invalid device")

	// ErrBadCredentials is returned by Authenticate and AuthenticateCert when
	// the device is unknown, has no such credential, or the password is wrong.
	// The three cases are deliberately indistinguishable.
	ErrBadCredentials = errors.New("bad credentials")

	// ErrDisabled is returned by Authenticate and AuthenticateCert when the
	// credentials are right but the device is disabled.
	ErrDisabled = errors.New("device disabled")

	// ErrLocked is returned by Open when another process (typically a running
	// node) holds the registry file and did not release it within
	// Options.LockTimeout.
	ErrLocked = errors.New("device registry is in use by another process")

	// ErrInvalidUser is returned by AddUser when a Kafka user name is not
	// 1 to 256 bytes of UTF-8 without control characters, or is "*".
	ErrInvalidUser = errors.New("invalid user name")

	// ErrInvalidCredential is returned by SetUserSCRAM for a credential of
	// an unknown mechanism, with fewer than MinSCRAMIterations iterations,
	// or missing its salt or keys.
	ErrInvalidCredential = errors.New("invalid credential")

	// ErrUserExists is returned by AddUser when the name is taken.
	ErrUserExists = errors.New("user already exists")

	// ErrUserNotFound is returned when no Kafka user has the given name.
	ErrUserNotFound = errors.New("user not found")

	// ErrInvalidKafkaACL is returned by AddKafkaACLs when a binding has a
	// field out of its set (see KafkaACL).
	ErrInvalidKafkaACL = errors.New("invalid Kafka ACL")

	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("device registry closed")
)
