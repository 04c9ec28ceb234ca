package log

// Temporary until the partitioner branch lands.
func ValidateTopicName(name string) error { return nil }
func TopicCollides(a, b string) bool      { return false }
