package edge

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	bolterrors "go.etcd.io/bbolt/errors"
)

// The node's state files: what each holds and what is safe to do when one
// is damaged (a failing disk or SD card), said in the error that stops the
// node, so the operator need not look it up.
var stateAdvice = map[string]string{
	"devices.db": "moving it away starts the node with an empty device registry (devices and Kafka users to add again)",
	"kafka-groups.db": "moving it away starts the node without committed offsets (consumer groups restart from " +
		"their auto.offset.reset)",
	"kafka-producer-ids.db": "restore it from a backup; moving it away hands out producer ids again from the start",
	"mqtt-sessions.db": "moving it away starts the node without MQTT sessions (subscriptions of persistent " +
		"sessions, queued QoS 1/2 and retained messages are lost)",
	"topics.db": "never move it away: it names the topics and holds their configs (without it the partitions " +
		"are not served); restore it from a backup",
}

// stateFileError names a damaged state file and says what is safe to do;
// other errors pass unchanged.
func stateFileError(path string, err error) error {
	for _, damage := range []error{bolterrors.ErrInvalid, bolterrors.ErrChecksum, bolterrors.ErrVersionMismatch, bolterrors.ErrInvalidMapping} {
		if errors.Is(err, damage) {
			return fmt.Errorf("%s is damaged (%w): stop here and copy the data directory aside first; %s",
				path, damage, stateAdvice[filepath.Base(path)])
		}
	}
	return err
}

// FormatFile is the data directory's format version file: one line, the
// version of the layout of everything in the directory. A node refuses a
// directory written by a newer ferry (a version it does not know) instead
// of misreading it.
const FormatFile = "ferry-format"

// DataFormat is the data directory format this ferry writes and reads.
// Raise it when a change makes older releases misread the directory.
const DataFormat = 1

// CheckDataFormat reads the data directory's format version and refuses
// one newer than DataFormat; create writes the current one where there is
// none (a new directory, or one from before the file existed, which is
// format 1).
func CheckDataFormat(dir string, create bool) error {
	path := filepath.Join(dir, FormatFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		if !create {
			return nil
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		return writeFormat(path)
	}
	if err != nil {
		return fmt.Errorf("reading the data directory's format version: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	v, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || v < 1 {
		return fmt.Errorf("%s: %q is not a format version (one line, a number): damaged? this ferry writes %d", path, line, DataFormat)
	}
	if v > DataFormat {
		return fmt.Errorf("%s says format %d: this data directory was written by a newer ferry, and this one reads up "+
			"to format %d; run the newer ferry on it (or restore a backup made with this version)", path, v, DataFormat)
	}
	return nil
}

func writeFormat(path string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "%d\n", DataFormat)
	if err = w.Flush(); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
