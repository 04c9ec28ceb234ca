package log

import (
	"fmt"
	"strings"
)

// MaxTopicNameLength is Kafka's limit on a topic name.
const MaxTopicNameLength = 249

// ValidateTopicName checks a topic name as Kafka's Topic.validate does: not
// empty, not "." or "..", at most 249 characters, and only ASCII letters,
// digits, '.', '_' and '-'.
func ValidateTopicName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: the name is empty", ErrInvalidTopic)
	case name == "." || name == "..":
		return fmt.Errorf("%w: %q is not allowed", ErrInvalidTopic, name)
	case len(name) > MaxTopicNameLength:
		return fmt.Errorf("%w: %d characters, at most %d allowed", ErrInvalidTopic, len(name), MaxTopicNameLength)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: %q contains %q at byte %d; only [a-zA-Z0-9._-] are allowed", ErrInvalidTopic, name, rune(c), i)
		}
	}
	return nil
}

// TopicCollides reports whether two distinct topic names would share metric
// names, because Kafka's metrics replace '.' with '_'. Kafka refuses to
// create a topic that collides with an existing one, and so does CreateTopic.
func TopicCollides(a, b string) bool {
	return a != b && strings.ReplaceAll(a, ".", "_") == strings.ReplaceAll(b, ".", "_")
}
