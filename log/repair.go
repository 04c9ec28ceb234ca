package log

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// An operator's way out of a damaged partition (`ferry log truncate`): copy
// what a cut changes (BackupFrom), then cut (CutAt). Both run on a log the
// command opened offline, holding the data directory's lock.

// BackupFrom copies to dst (created, and which must not hold the files
// already) every file of the partition that a cut at offset changes: the
// segment holding offset and every later one, with their indexes, and the
// partition's producer snapshots and checkpoints. progress, if not nil, is
// called as bytes are copied, with the running and the total count. It
// returns the files written.
func (p *Partition) BackupFrom(offset int64, dst string, progress func(done, total int64)) ([]string, error) {
	p.mu.RLock()
	var names []string
	if p.closed {
		p.mu.RUnlock()
		return nil, ErrClosed
	}
	i := sort.Search(len(p.segs), func(i int) bool { return p.segs[i].base > offset }) - 1
	if i < 0 {
		i = 0
	}
	for _, s := range p.segs[i:] {
		base := filepath.Base(s.path)
		names = append(names, base+".log", base+".index", base+".timeindex")
	}
	p.mu.RUnlock()
	entries, err := p.fs.ReadDir(p.dir)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if n := e.Name(); strings.HasSuffix(n, ".snapshot") || n == epochFileName || n == hwFileName {
			names = append(names, n)
		}
	}
	var total int64
	var present []string
	for _, n := range names {
		st, err := os.Stat(filepath.Join(p.dir, n))
		if errors.Is(err, os.ErrNotExist) {
			continue // an index not yet written
		}
		if err != nil {
			return nil, err
		}
		total += st.Size()
		present = append(present, n)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return nil, err
	}
	var done int64
	var out []string
	for _, n := range present {
		to := filepath.Join(dst, n)
		if err := copyFile(p.fs, filepath.Join(p.dir, n), to, func(k int64) {
			done += k
			if progress != nil {
				progress(done, total)
			}
		}); err != nil {
			return out, err
		}
		out = append(out, to)
	}
	if progress != nil && total == 0 {
		progress(0, 0)
	}
	return out, nil
}

// copyFile copies from (through the log's FS) to a new file, fsynced.
func copyFile(fsys FS, from, to string, copied func(int64)) error {
	src, err := fsys.OpenFile(from, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	var off int64
	for {
		n, rerr := src.ReadAt(buf, off)
		if n > 0 {
			if _, err := dst.Write(buf[:n]); err != nil {
				dst.Close()
				return err
			}
			off += int64(n)
			copied(int64(n))
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			dst.Close()
			return fmt.Errorf("reading %s: %w", from, rerr)
		}
	}
	if err := dst.Sync(); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// CutAt cuts the partition so that it ends at offset, as TruncateTo does
// (whole batches, never below the start offset or the high watermark).
// At the recorded damage (Damage) it cuts at the position the damaged
// batch was found at, which also works where its header can no longer be
// read or a sealed segment's validation stopped there. It returns the new
// end offset.
func (p *Partition) CutAt(offset int64) (int64, error) {
	d, ok := p.Damage()
	if !ok || d.Offset != offset {
		return p.TruncateTo(offset)
	}
	p.smu.Lock()
	defer p.smu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hwmu.Lock()
	defer p.hwmu.Unlock()
	if p.closed {
		return 0, ErrClosed
	}
	if p.failed != nil {
		return 0, p.failed
	}
	end := p.active.next
	if offset < p.segs[0].base {
		return end, fmt.Errorf("%w: truncating %s-%d to %d, below its start offset %d", ErrOffsetOutOfRange, p.topic, p.id, offset, p.segs[0].base)
	}
	if hw := p.HighWatermark(); offset < hw {
		return end, fmt.Errorf("%w: truncating %s-%d to %d, high watermark %d", ErrBelowHighWatermark, p.topic, p.id, offset, hw)
	}
	i := -1
	for k, s := range p.segs {
		if s.path+".log" == d.Segment {
			i = k
		}
	}
	if i < 0 {
		return end, fmt.Errorf("truncating %s-%d at the damaged batch: its segment %s is gone", p.topic, p.id, d.Segment)
	}
	if err := p.ensureEpochsLocked(); err != nil {
		return end, err
	}
	if err := p.truncateLocked(i, d.Position, offset); err != nil {
		p.failed = fmt.Errorf("partition %s-%d disabled after a failed truncation to %d: %w", p.topic, p.id, offset, err)
		p.logger.Error("partition disabled", "err", p.failed)
		p.failDurability(p.failed)
		return 0, p.failed
	}
	p.clearDamageFrom(offset)
	p.logger.Info("truncated log at a damaged batch", "from_end_offset", end, "to_end_offset", offset)
	return offset, nil
}
