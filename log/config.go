package log

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"
)

// FlushPolicy says when appended bytes are fsynced, and so what "durable" means
// for a partition of the topic.
type FlushPolicy int8

const (
	// FlushInterval fsyncs on demand (group commit): a waiter (WaitDurable)
	// starts an fsync at once, or right after the running one, which every
	// waiter that arrived meanwhile shares; data nobody waits for is fsynced
	// at most flush.ms after the previous pass began. Durable means fsynced;
	// WaitDurable returns after at most the running fsync and one more. The
	// default.
	FlushInterval FlushPolicy = iota
	// FlushAlways fsyncs before an append is reported durable. Appenders that
	// arrive while an fsync is running share the next one (group commit).
	FlushAlways
	// FlushNever leaves flushing to the operating system. Durable means written
	// to the page cache: it survives a crash of the process, not of the machine.
	FlushNever
)

func (p FlushPolicy) String() string {
	switch p {
	case FlushAlways:
		return "always"
	case FlushNever:
		return "never"
	default:
		return "interval"
	}
}

// ParseFlushPolicy parses "always", "interval" or "never".
func ParseFlushPolicy(s string) (FlushPolicy, error) {
	switch s {
	case "always":
		return FlushAlways, nil
	case "interval":
		return FlushInterval, nil
	case "never":
		return FlushNever, nil
	}
	return 0, fmt.Errorf("%w: flush.policy %q: want always, interval or never", ErrInvalidConfig, s)
}

// Topic config keys. Names follow Kafka's topic configs where Kafka has one.
const (
	ConfigSegmentBytes       = "segment.bytes"
	ConfigSegmentMs          = "segment.ms"
	ConfigRetentionMs        = "retention.ms"
	ConfigRetentionBytes     = "retention.bytes"
	ConfigFlushPolicy        = "flush.policy"
	ConfigFlushMs            = "flush.ms"
	ConfigMaxMessageBytes    = "max.message.bytes"
	ConfigIndexIntervalBytes = "index.interval.bytes"
	// ConfigMaxInflatedBytes is ferry's own (Kafka has none): how many
	// bytes a compressed batch's records may inflate to; 0 means 8 times
	// max.message.bytes.
	ConfigMaxInflatedBytes = "max.inflated.bytes"
)

// TopicConfig is the parsed, validated form of a topic's configs.
type TopicConfig struct {
	SegmentBytes       int64         // roll the active segment past this size
	SegmentAge         time.Duration // roll the active segment once its first batch is this old
	RetentionAge       time.Duration // delete segments whose newest record is older; <0: keep forever
	RetentionBytes     int64         // delete oldest segments while the partition is larger; <0: no limit
	Flush              FlushPolicy   // see FlushPolicy
	FlushEvery         time.Duration // FlushInterval: the longest wait of unwaited data
	MaxMessageBytes    int32         // largest RecordBatch accepted by Append
	IndexIntervalBytes int32         // bytes of log between two sparse index entries
	MaxInflatedBytes   int64         // most bytes a compressed batch's records may inflate to (resolved: never 0)
	Compression        int8          // compression.type: the codec Append stores batches in; -1: the producer's (recompress.go)
	LogAppendTime      bool          // message.timestamp.type=LogAppendTime: Append stamps the append time (appendtime.go)
	MinInsyncReplicas  int           // in-sync replicas acks=all needs (min.insync.replicas)
}

// MaxReplicas is the most replicas a partition may have (a cluster's
// replication factor), and so the highest min.insync.replicas.
const MaxReplicas = 5

// configSpec describes one config key: its default and how to parse it.
type configSpec struct {
	def   string
	doc   string
	parse func(c *TopicConfig, v string) error
}

var configSpecs = map[string]configSpec{
	ConfigSegmentBytes: {"67108864", "size in bytes at which the active segment is rolled (1 MiB..1 GiB)",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigSegmentBytes, v, 1<<20, 1<<30)
			c.SegmentBytes = n
			return err
		}},
	ConfigSegmentMs: {"604800000", "age in ms at which the active segment is rolled",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigSegmentMs, v, 1, math.MaxInt64/int64(time.Millisecond))
			c.SegmentAge = time.Duration(n) * time.Millisecond
			return err
		}},
	ConfigRetentionMs: {"604800000", "age in ms after which whole segments are deleted; -1 keeps forever",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigRetentionMs, v, -1, math.MaxInt64/int64(time.Millisecond))
			c.RetentionAge = time.Duration(n) * time.Millisecond
			if n < 0 {
				c.RetentionAge = -1
			}
			return err
		}},
	ConfigRetentionBytes: {"-1", "partition size in bytes above which the oldest segments are deleted; -1 is no limit",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigRetentionBytes, v, -1, math.MaxInt64)
			c.RetentionBytes = n
			return err
		}},
	ConfigFlushPolicy: {"interval", "when appends are fsynced: always, interval or never",
		func(c *TopicConfig, v string) error {
			p, err := ParseFlushPolicy(v)
			c.Flush = p
			return err
		}},
	ConfigFlushMs: {"10", "with flush.policy=interval, the longest in ms unsynced data nobody waits for stays unsynced after the last group commit",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigFlushMs, v, 1, 60_000)
			c.FlushEvery = time.Duration(n) * time.Millisecond
			return err
		}},
	ConfigMaxMessageBytes: {"1048588", "largest record batch accepted, in bytes",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigMaxMessageBytes, v, 64, 1<<30)
			c.MaxMessageBytes = int32(n)
			return err
		}},
	ConfigMaxInflatedBytes: {"0", "most bytes a compressed batch's records may inflate to (1024..4 GiB); 0 is 8 times max.message.bytes",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigMaxInflatedBytes, v, 0, maxInflatedLimit)
			if err == nil && n > 0 && n < 1024 {
				err = fmt.Errorf("%w: %s=%d out of range: 0 or [1024, %d]", ErrInvalidConfig, ConfigMaxInflatedBytes, n, int64(maxInflatedLimit))
			}
			c.MaxInflatedBytes = n
			return err
		}},
	ConfigIndexIntervalBytes: {"4096", "bytes of log between two sparse index entries",
		func(c *TopicConfig, v string) error {
			n, err := parseInt(ConfigIndexIntervalBytes, v, 0, 1<<24)
			c.IndexIntervalBytes = int32(n)
			return err
		}},
}

func parseInt(key, v string, min, max int64) (int64, error) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not an integer", ErrInvalidConfig, key, v)
	}
	if n < min || n > max {
		return 0, fmt.Errorf("%w: %s=%d out of range [%d, %d]", ErrInvalidConfig, key, n, min, max)
	}
	return n, nil
}

// ConfigKeys lists every topic config key, sorted.
func ConfigKeys() []string {
	keys := make([]string, 0, len(configSpecs))
	for k := range configSpecs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ConfigDefault returns the built-in default and a one-line description of key.
func ConfigDefault(key string) (def, doc string, ok bool) {
	s, ok := configSpecs[key]
	return s.def, s.doc, ok
}

// DefaultConfigs returns every key with its built-in default.
func DefaultConfigs() map[string]string {
	m := make(map[string]string, len(configSpecs))
	for k, s := range configSpecs {
		m[k] = s.def
	}
	return m
}

// ValidateConfigs checks that every key is known and every value parses.
func ValidateConfigs(configs map[string]string) error {
	var c TopicConfig
	for _, k := range sortedKeys(configs) {
		s, ok := configSpecs[k]
		if !ok {
			return fmt.Errorf("%w: unknown key %q", ErrInvalidConfig, k)
		}
		if err := s.parse(&c, configs[k]); err != nil {
			return err
		}
	}
	return nil
}

// validateConfigs is ValidateConfigs with this log's own rule: alone,
// min.insync.replicas above 1 could never be met (Options.Replicated).
func (l *Log) validateConfigs(configs map[string]string) error {
	if err := ValidateConfigs(configs); err != nil {
		return err
	}
	if l.replicated {
		return nil
	}
	if c, err := ParseTopicConfig(configs, nil); err == nil && c.MinInsyncReplicas > 1 {
		return fmt.Errorf("%w: %s=%d: this node is a partition's only replica, so acks=all could never be met", ErrInvalidConfig, ConfigMinInsyncReplicas, c.MinInsyncReplicas)
	}
	return nil
}

// ParseTopicConfig resolves configs over defaults (then the built-in defaults)
// into a TopicConfig. Unknown keys and bad values are errors.
func ParseTopicConfig(configs, defaults map[string]string) (TopicConfig, error) {
	var c TopicConfig
	for k, s := range configSpecs {
		v, ok := configs[k]
		if !ok {
			v, ok = defaults[k]
		}
		if !ok {
			v = s.def
		}
		if err := s.parse(&c, v); err != nil {
			return c, err
		}
	}
	for _, m := range []map[string]string{configs, defaults} {
		for k := range m {
			if _, ok := configSpecs[k]; !ok {
				return c, fmt.Errorf("%w: unknown key %q", ErrInvalidConfig, k)
			}
		}
	}
	if c.MaxInflatedBytes == 0 {
		c.MaxInflatedBytes = 8 * int64(c.MaxMessageBytes)
	}
	return c, nil
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
