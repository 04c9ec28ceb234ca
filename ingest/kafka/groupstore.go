package kafka

import (
	"context"
	"encoding/json"
	"errors"
	flog "ferry/log"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	bolt "go.etcd.io/bbolt"
)

// Where a Groups keeps committed offsets: a node alone in kafka-groups.db
// (boltStore), a cluster's coordinator in the offsets topic (replStore,
// groupsrepl.go).

// tpKey is a topic partition of a group's committed offsets.
type tpKey struct {
	topic     string
	partition int32
}

type offsetStore interface {
	// write stores puts and deletes dels in one write, returning once it
	// is durable (committed).
	write(ctx context.Context, group string, puts map[tpKey]committedOffset, dels []tpKey) error
	// committed is a group's offsets: topic → partition → offset.
	committed(group string) (map[string]map[int32]committedOffset, error)
	// groupIDs are the groups with committed offsets.
	groupIDs() []string
	// all is every group's committed offsets, sorted.
	all() ([]CommittedOffset, error)
	close() error
}

// Errors of the replicated store, answered with Kafka's codes.
var (
	errNotCoordinator = errors.New("kafka: this broker does not coordinate the group (its offsets partition is led elsewhere)")
	errLoadInProgress = errors.New("kafka: the group's offsets partition is still loading")
)

// storeCode is the Kafka error code of a store error.
func storeCode(err error) int16 {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errNotCoordinator), errors.Is(err, flog.ErrNotLeader):
		// The offsets partition's leadership moved (replicated).
		return kerr.NotCoordinator.Code
	case errors.Is(err, errLoadInProgress):
		return kerr.CoordinatorLoadInProgress.Code
	case errors.Is(err, context.DeadlineExceeded):
		return kerr.RequestTimedOut.Code
	default:
		return kerr.CoordinatorNotAvailable.Code
	}
}

// commitTimeout bounds a commit's wait for its record to be committed
// (Kafka's offsets.commit.timeout.ms).
const commitTimeout = 5 * time.Second

// boltStore is kafka-groups.db: key group \x00 topic \x00 partition (4
// bytes), value a JSON committedOffset; every write one fsynced
// transaction.
type boltStore struct{ db *bolt.DB }

func (b boltStore) write(_ context.Context, group string, puts map[tpKey]committedOffset, dels []tpKey) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(offsetsBucket)
		for k, co := range puts {
			v, err := json.Marshal(co)
			if err != nil {
				return err
			}
			if err := bk.Put(offsetKey(group, k.topic, k.partition), v); err != nil {
				return err
			}
		}
		for _, k := range dels {
			if err := bk.Delete(offsetKey(group, k.topic, k.partition)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b boltStore) committed(groupID string) (map[string]map[int32]committedOffset, error) {
	return boltCommitted(b.db, groupID)
}

func boltCommitted(db *bolt.DB, groupID string) (map[string]map[int32]committedOffset, error) {
	out := map[string]map[int32]committedOffset{}
	err := db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(offsetsBucket).Cursor()
		prefix := append([]byte(groupID), 0)
		for k, v := c.Seek(prefix); k != nil && len(k) > len(prefix) && string(k[:len(prefix)]) == string(prefix); k, v = c.Next() {
			_, topic, p, ok := parseOffsetKey(k)
			if !ok {
				continue
			}
			var co committedOffset
			if json.Unmarshal(v, &co) != nil {
				continue
			}
			if out[topic] == nil {
				out[topic] = map[int32]committedOffset{}
			}
			out[topic][p] = co
		}
		return nil
	})
	return out, err
}

func (b boltStore) groupIDs() []string { return boltGroupIDs(b.db) }

func boltGroupIDs(db *bolt.DB) []string {
	seen := map[string]bool{}
	var out []string
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(offsetsBucket).ForEach(func(k, _ []byte) error {
			if gid, _, _, ok := parseOffsetKey(k); ok && !seen[gid] {
				seen[gid] = true
				out = append(out, gid)
			}
			return nil
		})
	})
	return out
}

func (b boltStore) close() error { return b.db.Close() }
