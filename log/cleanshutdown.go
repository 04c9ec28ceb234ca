package log

import (
	"errors"
	"io/fs"
	"path/filepath"
)

// cleanShutdownFile marks a log closed cleanly: written by Close once
// every partition is fsynced and closed, removed (durably) by Open before
// anything is appended. Its presence at Open means the last run ended with
// Close, not a crash or kill -9 (Kafka's .kafka_cleanshutdown). A cluster
// uses it to know whether this node's replicas may still be eligible
// leaders (KIP-966): after an unclean shutdown a replica may have lost
// records it had acknowledged to a leader as fetched.
const cleanShutdownFile = "clean-shutdown"

// takeCleanShutdown (Options.CleanShutdownMarker) reads and removes the marker: true if the last run
// closed cleanly. Removal is made durable before Open returns, so a crash
// of this run is never mistaken for a clean one.
func (l *Log) takeCleanShutdown() (bool, error) {
	path := filepath.Join(l.dir, cleanShutdownFile)
	if _, err := l.fs.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	if err := l.fs.Remove(path); err != nil {
		return false, err
	}
	return true, l.fs.SyncDir(l.dir)
}

// markCleanShutdown writes the marker (Close, after every partition is
// fsynced and closed without error).
func (l *Log) markCleanShutdown() error {
	return writeFileAtomic(l.fs, l.dir, cleanShutdownFile, nil)
}

// CleanShutdown says whether the previous run of this log ended with a
// clean Close (false for a new log, after a crash or a kill -9).
func (l *Log) CleanShutdown() bool { return l.cleanShutdown }
