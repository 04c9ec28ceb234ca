package log

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// partitionDirs lists the partition directories of topic in the log's
// directory.
func partitionDirs(t *testing.T, dir, topic string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), topic+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestPartitionCaps: the caps per topic and per log refuse a create or a
// grow before anything is made.
func TestPartitionCaps(t *testing.T) {
	l := openTestLog(t, Options{MaxPartitionsPerTopic: 4, MaxPartitions: 6, OpenFileLimit: -1})
	if _, err := l.CreateTopic("a", 5, nil); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("5 partitions with a cap of 4 per topic: %v, want ErrInvalidPartitions", err)
	}
	if _, err := l.CreateTopic("a", 4, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPartitions("a", 5); !errors.Is(err, ErrInvalidPartitions) {
		t.Errorf("growing to 5 with a cap of 4 per topic: %v, want ErrInvalidPartitions", err)
	}
	if _, err := l.CreateTopic("b", 3, nil); !errors.Is(err, ErrPartitionLimit) {
		t.Errorf("7 partitions in all with a cap of 6: %v, want ErrPartitionLimit", err)
	}
	if _, err := l.CreateTopic("b", 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := l.AddPartitions("b", 3); !errors.Is(err, ErrPartitionLimit) {
		t.Errorf("growing past the cap of 6 in all: %v, want ErrPartitionLimit", err)
	}
	if got := partitionDirs(t, l.Dir(), "b"); len(got) != 2 {
		t.Errorf("topic b's directories: %v, want 2", got)
	}
	if n, _ := l.PartitionCount("b"); n != 2 {
		t.Errorf("topic b has %d partitions after a refused grow", n)
	}
}

// TestPartitionFileBudget: partitions whose files would not fit the
// open-file limit (less a quarter for connections) are refused up front.
func TestPartitionFileBudget(t *testing.T) {
	// 100 files, 64 kept for connections and reads: 36 for partitions of 3.
	l := openTestLog(t, Options{OpenFileLimit: 100})
	if _, err := l.CreateTopic("big", 13, nil); !errors.Is(err, ErrPartitionLimit) || !strings.Contains(err.Error(), "open-file limit") {
		t.Errorf("13 partitions of 3 files under a limit of 100: %v, want ErrPartitionLimit naming the open-file limit", err)
	}
	if got := partitionDirs(t, l.Dir(), "big"); len(got) != 0 {
		t.Errorf("a refused create left %v", got)
	}
	if _, err := l.CreateTopic("big", 12, nil); err != nil {
		t.Fatal(err)
	}
}

// emfileFS fails every file open after the first allow, as the open-file
// limit does.
type emfileFS struct {
	OSFS
	allow *int
}

func (f emfileFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if *f.allow <= 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
	}
	*f.allow--
	return f.OSFS.OpenFile(name, flag, perm)
}

// TestFailedCreateLeavesNothing: a create or grow that fails half-way
// (out of file descriptors) removes every directory it made, and leaves
// the topic as it was.
func TestFailedCreateLeavesNothing(t *testing.T) {
	allow := 1 << 30
	l := openTestLog(t, Options{FS: emfileFS{allow: &allow}, OpenFileLimit: -1})
	if _, err := l.CreateTopic("keep", 2, nil); err != nil {
		t.Fatal(err)
	}
	allow = 3*5 + 1 // five partitions and a bit, of ten
	if _, err := l.CreateTopic("big", 10, nil); !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("create out of file descriptors: %v", err)
	}
	if got := partitionDirs(t, l.Dir(), "big"); len(got) != 0 {
		t.Errorf("a failed create left %d directories: %v", len(got), got)
	}
	if _, err := l.Topic("big"); !errors.Is(err, ErrUnknownTopic) {
		t.Errorf("the failed topic: %v", err)
	}
	allow = 3*2 + 1
	if err := l.AddPartitions("keep", 6); !errors.Is(err, syscall.EMFILE) {
		t.Fatalf("grow out of file descriptors: %v", err)
	}
	if got := partitionDirs(t, l.Dir(), "keep"); len(got) != 2 {
		t.Errorf("a failed grow left %v, want keep-0 and keep-1", got)
	}
	allow = 1 << 30
	if _, err := l.CreateTopic("big", 10, nil); err != nil {
		t.Fatalf("create once descriptors are back: %v", err)
	}
	if _, err := os.Stat(filepath.Join(l.Dir(), "big-9")); err != nil {
		t.Error(err)
	}
}
