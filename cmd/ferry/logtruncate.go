package main

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	flog "ferry/log"
)

// logTruncateCommand is `ferry log truncate`: an operator's way past a
// damaged batch (a node reports it in /readyz and ferry status). Offline,
// on a stopped node's data directory: it copies what the cut changes to a
// backup directory first, then cuts the partition so it ends at the
// offset, through the log's own API.
func logTruncateCommand() *command {
	return &command{
		name: "truncate", summary: "cut a partition of a stopped node so it ends at an offset, after backing up what goes",
		example: "ferry log truncate --data-dir /var/lib/ferry --topic climate --partition 0 --offset 1234",
		flags: func(fs *pflag.FlagSet) func([]string, io.Writer) error {
			dataDir := fs.String("data-dir", "", "the stopped node's data directory (required)")
			topic := fs.String("topic", "", "the topic (required)")
			partition := fs.Int32("partition", -1, "the partition (required)")
			offset := fs.Int64("offset", -1, "the offset the partition ends at afterwards: the first one removed (required; a damaged partition's is in /readyz and ferry status)")
			backupDir := fs.String("backup-dir", "", "where to copy the files the cut changes (default: DATA-DIR/backup/truncate-TOPIC-PARTITION-TIME)")
			asJSON := fs.Bool("json", false, "print JSON")
			return func(args []string, out io.Writer) error {
				if err := exactArgs(args); err != nil {
					return err
				}
				switch {
				case *dataDir == "":
					return usagef("--data-dir is required: truncating works on a stopped node's files")
				case *topic == "":
					return usagef("--topic is required")
				case *partition < 0:
					return usagef("--partition is required")
				case *offset < 0:
					return usagef("--offset is required (and not negative)")
				}
				if err := checkDataDir(*dataDir); err != nil {
					return err
				}
				dst := *backupDir
				if dst == "" {
					dst = filepath.Join(*dataDir, "backup", fmt.Sprintf("truncate-%s-%d-%s", *topic, *partition, time.Now().UTC().Format("20060102T150405Z")))
				}
				res, err := truncatePartition(*dataDir, *topic, *partition, *offset, dst)
				if err != nil {
					return err
				}
				if *asJSON {
					return json.NewEncoder(out).Encode(res)
				}
				if res.EndOffset == res.PreviousEndOffset {
					fmt.Fprintf(out, "%s-%d ends at %d already: nothing cut, nothing backed up\n", res.Topic, res.Partition, res.EndOffset)
					return nil
				}
				fmt.Fprintf(out, "backed up %d file(s), %s, to %s\n", len(res.BackupFiles), formatBytes(res.BackupBytes), res.BackupDir)
				fmt.Fprintf(out, "%s-%d cut at offset %d (it ended at %d): %d offset(s) removed\n",
					res.Topic, res.Partition, res.EndOffset, res.PreviousEndOffset, res.PreviousEndOffset-res.EndOffset)
				if res.EndOffset < res.Offset {
					fmt.Fprintf(out, "offset %d is inside a batch, which is never split: the cut is at the batch's first offset, %d\n", res.Offset, res.EndOffset)
				}
				if res.DamageCleared {
					fmt.Fprintf(out, "the damage at offset %d is gone: the node starts ready; producers continue at %d\n", res.DamagedOffset, res.EndOffset)
				} else if res.DamagedOffset >= 0 {
					fmt.Fprintf(out, "the partition is still damaged at offset %d: cut there to clear it\n", res.DamagedOffset)
				}
				return nil
			}
		},
	}
}

// truncateJSON is what `ferry log truncate --json` prints.
type truncateJSON struct {
	Topic             string   `json:"topic"`
	Partition         int32    `json:"partition"`
	Offset            int64    `json:"offset"` // asked for
	PreviousEndOffset int64    `json:"previous_end_offset"`
	EndOffset         int64    `json:"end_offset"`
	BackupDir         string   `json:"backup_dir,omitempty"`
	BackupFiles       []string `json:"backup_files"`
	BackupBytes       int64    `json:"backup_bytes"`
	// DamagedOffset is where the partition was damaged before the cut
	// (-1: it was not); DamageCleared says the cut removed it.
	DamagedOffset int64 `json:"damaged_offset"`
	DamageCleared bool  `json:"damage_cleared"`
}

func truncatePartition(dataDir, topic string, partition int32, offset int64, dst string) (truncateJSON, error) {
	res := truncateJSON{Topic: topic, Partition: partition, Offset: offset, BackupFiles: []string{}, DamagedOffset: -1}
	err := withLog(dataDir, func(l *flog.Log) error {
		p, err := l.Partition(topic, partition)
		if err != nil {
			return err
		}
		start, end := p.StartOffset(), p.EndOffset()
		res.PreviousEndOffset, res.EndOffset = end, end
		if d, ok := p.Damage(); ok {
			res.DamagedOffset = d.Offset
		}
		if offset < start {
			return fmt.Errorf("offset %d is below %s-%d's start offset %d: a cut there would keep nothing; ferry topics delete removes a topic", offset, topic, partition, start)
		}
		if offset >= end {
			return nil
		}
		var done, total atomic.Int64
		prog := startProgress(progressOut, 250*time.Millisecond, func() string {
			return fmt.Sprintf("backing up to %s: %s of %s", dst, formatBytes(done.Load()), formatBytes(total.Load()))
		})
		files, err := p.BackupFrom(offset, dst, func(d, t int64) { done.Store(d); total.Store(t) })
		prog.end()
		if err != nil {
			return fmt.Errorf("backing up to %s (nothing is cut): %w", dst, err)
		}
		res.BackupDir, res.BackupFiles, res.BackupBytes = dst, files, total.Load()
		if res.EndOffset, err = p.CutAt(offset); err != nil {
			return fmt.Errorf("cutting %s-%d at %d (the backup is in %s): %w", topic, partition, offset, dst, err)
		}
		_, still := p.Damage()
		res.DamageCleared = res.DamagedOffset >= 0 && !still
		return nil
	})
	return res, err
}
