package log

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Kafka's topic configs that ferry keeps without acting on them. Kafka tools
// and clients' test suites set them on every topic they create; ferry
// accepts each value it can stand behind on one node without compaction or
// tiered storage, stores and describes it, and refuses any other with
// ErrInvalidConfig and the reason (what ferry would have to do and does
// not). The eight keys of config.go, compression.type (recompress.go) and
// message.timestamp.type (appendtime.go) are the ones ferry acts on.
//
// Accepted and without effect (documented as such in their descriptions):
// the compaction settings until compaction exists, the replication and
// throttling settings of a one-node cluster, the preallocation and index
// sizing of Kafka's own segment files, and the compression levels (ferry
// recompresses at the codec's default level).

// Kafka topic config keys ferry keeps without acting on them, and two it
// honours (recompress.go, appendtime.go).
const (
	ConfigCleanupPolicy        = "cleanup.policy"
	ConfigCompressionType      = "compression.type"
	ConfigMessageTimestampType = "message.timestamp.type"
	ConfigMinInsyncReplicas    = "min.insync.replicas"
)

// noEffect is the description's ending of a key kept without effect.
const noEffect = " (kept for Kafka tools; no effect in ferry)"

func init() {
	word := func(key string, accepted []string, refused map[string]string) func(*TopicConfig, string) error {
		return func(_ *TopicConfig, v string) error {
			for _, a := range accepted {
				if v == a {
					return nil
				}
			}
			if why, ok := refused[v]; ok {
				return fmt.Errorf("%w: %s=%s: %s", ErrInvalidConfig, key, v, why)
			}
			return fmt.Errorf("%w: %s=%q: want %s", ErrInvalidConfig, key, v, strings.Join(accepted, " or "))
		}
	}
	integer := func(key string, min, max int64) func(*TopicConfig, string) error {
		return func(_ *TopicConfig, v string) error { _, err := parseInt(key, v, min, max); return err }
	}
	boolean := func(key string) func(*TopicConfig, string) error { return word(key, []string{"false", "true"}, nil) }
	noCompaction := "ferry does not compact logs (yet): only delete (retention by age and size)"
	max := strconv.FormatInt(math.MaxInt64, 10)
	for k, s := range map[string]configSpec{
		ConfigCleanupPolicy: {"delete", "what happens to old segments: delete (compact is not implemented)",
			word(ConfigCleanupPolicy, []string{"delete"}, map[string]string{"compact": noCompaction, "compact,delete": noCompaction, "delete,compact": noCompaction})},
		ConfigMinInsyncReplicas: {"1", "in-sync replicas a record must reach before acks=all answers (1..5, at most the replication factor); a node alone, each partition's only replica, accepts only 1",
			func(c *TopicConfig, v string) error {
				// The replication factor is the cluster's to check it
				// against (edge/cluster); the log bounds it by the most
				// replicas a partition may have.
				n, err := parseInt(ConfigMinInsyncReplicas, v, 1, MaxReplicas)
				c.MinInsyncReplicas = int(n)
				return err
			}},
		"delete.retention.ms":   {"86400000", "how long compaction keeps tombstones" + noEffect + " until compaction exists", integer("delete.retention.ms", 0, math.MaxInt64)},
		"min.compaction.lag.ms": {"0", "the least age of a record compaction may remove" + noEffect + " until compaction exists", integer("min.compaction.lag.ms", 0, math.MaxInt64)},
		"max.compaction.lag.ms": {max, "the most age of a record before compaction must run" + noEffect + " until compaction exists", integer("max.compaction.lag.ms", 1, math.MaxInt64)},
		"min.cleanable.dirty.ratio": {"0.5", "the dirty share of a log that starts compaction" + noEffect + " until compaction exists",
			func(_ *TopicConfig, v string) error {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil || f < 0 || f > 1 {
					return fmt.Errorf("%w: min.cleanable.dirty.ratio=%q: want a number in [0, 1]", ErrInvalidConfig, v)
				}
				return nil
			}},
		"segment.index.bytes":                     {"10485760", "Kafka's preallocated index size; ferry's indexes grow as needed" + noEffect, integer("segment.index.bytes", 4, math.MaxInt32)},
		"segment.jitter.ms":                       {"0", "random jitter subtracted from segment.ms" + noEffect, integer("segment.jitter.ms", 0, math.MaxInt64)},
		"file.delete.delay.ms":                    {"60000", "delay before a deleted segment's files go; ferry deletes once the last reader is done" + noEffect, integer("file.delete.delay.ms", 0, math.MaxInt64)},
		"flush.messages":                          {max, "records between two fsyncs; ferry's flush.policy and flush.ms decide" + noEffect, integer("flush.messages", 1, math.MaxInt64)},
		"preallocate":                             {"false", "preallocate segment files" + noEffect, boolean("preallocate")},
		"unclean.leader.election.enable":          {"false", "elect an out-of-sync replica; one node has none" + noEffect, boolean("unclean.leader.election.enable")},
		"leader.replication.throttled.replicas":   {"", "replicas throttled on the leader; one node replicates nothing" + noEffect, func(*TopicConfig, string) error { return nil }},
		"follower.replication.throttled.replicas": {"", "replicas throttled on followers; one node replicates nothing" + noEffect, func(*TopicConfig, string) error { return nil }},
		"remote.storage.enable": {"false", "tiered storage: not implemented, so false only",
			word("remote.storage.enable", []string{"false"}, map[string]string{"true": "tiered storage is not implemented"})},
		"local.retention.ms":     {"-2", "tiered storage's local retention" + noEffect, integer("local.retention.ms", -2, math.MaxInt64)},
		"local.retention.bytes":  {"-2", "tiered storage's local retention" + noEffect, integer("local.retention.bytes", -2, math.MaxInt64)},
		"compression.gzip.level": {"-1", "gzip level for recompression; ferry recompresses at the codec's default level" + noEffect, integer("compression.gzip.level", -1, 9)},
		"compression.lz4.level":  {"9", "lz4 level for recompression; ferry recompresses at the codec's default level" + noEffect, integer("compression.lz4.level", 1, 17)},
		"compression.zstd.level": {"3", "zstd level for recompression; ferry recompresses at the codec's default level" + noEffect, integer("compression.zstd.level", -131072, 22)},
	} {
		if _, taken := configSpecs[k]; !taken { // a key ferry acts on wins
			configSpecs[k] = s
		}
	}
}

// listConfigs are the topic configs whose value is a comma-separated list,
// which IncrementalAlterConfigs may APPEND to and SUBTRACT from.
var listConfigs = map[string]bool{
	ConfigCleanupPolicy:                       true,
	"leader.replication.throttled.replicas":   true,
	"follower.replication.throttled.replicas": true,
}

// ConfigIsList reports whether a topic config's value is a comma-separated
// list (Kafka's LIST type).
func ConfigIsList(key string) bool { return listConfigs[key] }
