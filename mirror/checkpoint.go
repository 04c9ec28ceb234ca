package mirror

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nuid"
	bolt "go.etcd.io/bbolt"

	flog "ferry/log"
)

// checkpoints is the edge's mirror state in bbolt: its edge id and, per
// partition, the offset up to which the center has acknowledged (the next
// one it needs). The center is the authority on where shipping resumes; the
// checkpoint is what retention must keep until the center has it.
type checkpoints struct {
	db *bolt.DB
}

var (
	bucketMeta  = []byte("meta")
	bucketAcked = []byte("acked")
	bucketLost  = []byte("lost")
	keyEdgeID   = []byte("edge_id")
)

func openCheckpoints(path string) (*checkpoints, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("mirror: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketAcked, bucketLost, bucketDeleted} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return &checkpoints{db: db}, nil
}

func (c *checkpoints) close() error { return c.db.Close() }

// hostname is os.Hostname; tests replace it.
var hostname = os.Hostname

// defaultEdgeID is what an edge without --mirror-edge-id is called at the
// center: its hostname, which an operator recognises in the center's
// fleet view and its metrics, when that is a valid id (a topic name's
// characters); else a generated one.
func defaultEdgeID() string {
	if h, err := hostname(); err == nil && h != "" && flog.ValidateTopicName(h) == nil {
		return h
	}
	return nuid.Next()
}

// edgeID returns the configured id, or the one chosen on first start (the
// hostname, or generated) and kept since: renaming the machine later does
// not rename the edge.
func (c *checkpoints) edgeID(configured string) (string, error) {
	var id string
	err := c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketMeta)
		stored := string(b.Get(keyEdgeID))
		switch {
		case configured != "":
			id = configured
		case stored != "":
			id = stored
		default:
			id = defaultEdgeID()
		}
		if id != stored {
			return b.Put(keyEdgeID, []byte(id))
		}
		return nil
	})
	return id, err
}

func ackKey(topic string, partition int32) []byte {
	return []byte(topic + "/" + strconv.Itoa(int(partition)))
}

// load returns every partition's acknowledged offset.
func (c *checkpoints) load() (map[partKey]int64, error) { return c.loadBucket(bucketAcked) }

// loadLost returns, per partition, the first offset the disk budget
// dropped before the center had it, until a gap frame has told the center.
func (c *checkpoints) loadLost() (map[partKey]int64, error) { return c.loadBucket(bucketLost) }

// setLost records (fsynced) where a partition's unreported loss starts;
// a negative offset clears it.
func (c *checkpoints) setLost(k partKey, from int64) error { return c.setIn(bucketLost, k, from) }

// setIn records (fsynced) a partition's offset in a bucket; a negative
// offset clears it.
func (c *checkpoints) setIn(bucket []byte, k partKey, from int64) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		if from < 0 {
			return b.Delete(ackKey(k.topic, k.partition))
		}
		return b.Put(ackKey(k.topic, k.partition), binary.BigEndian.AppendUint64(nil, uint64(from)))
	})
}

func (c *checkpoints) loadBucket(name []byte) (map[partKey]int64, error) {
	out := map[partKey]int64{}
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(name).ForEach(func(k, v []byte) error {
			i := strings.LastIndexByte(string(k), '/')
			p, err := strconv.Atoi(string(k[i+1:]))
			if i < 0 || err != nil || len(v) != 8 {
				return errors.New("mirror: damaged checkpoint entry " + string(k))
			}
			out[partKey{string(k[:i]), int32(p)}] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	return out, err
}

// save stores acknowledged offsets (one fsynced transaction).
func (c *checkpoints) save(acked map[partKey]int64) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAcked)
		for k, v := range acked {
			if err := b.Put(ackKey(k.topic, k.partition), binary.BigEndian.AppendUint64(nil, uint64(v))); err != nil {
				return err
			}
		}
		return nil
	})
}
