package kafka

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ProducerIDs hands out idempotent producer ids that are never reused, even
// across crashes: ids are reserved in blocks, and a block is recorded
// durably in bbolt before any id of it is given out. A restart skips the
// rest of the block it was in.
type ProducerIDs struct {
	db   *bolt.DB
	mu   sync.Mutex
	next int64 // next id to hand out
	end  int64 // end of the reserved block
	// blocks, when set, reserves blocks instead of the local file (a
	// cluster's metadata, so no two nodes hand out one id).
	blocks func(count int64) (first int64, err error)
}

const producerIDBlock = 1000

var producerIDBucket = []byte("producer_ids")

// OpenProducerIDs opens (creating) the allocator's state file.
func OpenProducerIDs(path string) (*ProducerIDs, error) {
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening producer id state %s: %w", path, err)
	}
	return &ProducerIDs{db: db}, nil
}

// UseBlocks makes reserve draw the blocks from now on: a cluster's
// metadata, which hands every block out once to whichever node asks.
// Floor is where ids drawn from the local file stopped: the cluster's
// blocks must start at or above it.
func (p *ProducerIDs) UseBlocks(reserve func(count int64) (first int64, err error)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.blocks = reserve
	p.next, p.end = 0, 0
}

// Floor is the first id the local file has not reserved.
func (p *ProducerIDs) Floor() (int64, error) {
	var floor int64
	err := p.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(producerIDBucket); b != nil {
			if v := b.Get([]byte("next_block")); len(v) == 8 {
				floor = int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	return floor, err
}

// Next returns a producer id no one has had before.
func (p *ProducerIDs) Next() (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.next == p.end && p.blocks != nil {
		first, err := p.blocks(producerIDBlock)
		if err != nil {
			return 0, err
		}
		p.next, p.end = first, first+producerIDBlock
	}
	if p.next == p.end {
		err := p.db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists(producerIDBucket)
			if err != nil {
				return err
			}
			start := int64(0)
			if v := b.Get([]byte("next_block")); len(v) == 8 {
				start = int64(binary.BigEndian.Uint64(v))
			}
			p.next, p.end = start, start+producerIDBlock
			return b.Put([]byte("next_block"), binary.BigEndian.AppendUint64(nil, uint64(p.end)))
		})
		if err != nil {
			return 0, err
		}
	}
	id := p.next
	p.next++
	return id, nil
}

// Close closes the state file.
func (p *ProducerIDs) Close() error { return p.db.Close() }
