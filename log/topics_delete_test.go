package log

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
)

// hookFS is the operating system's filesystem with a hook before renames.
type hookFS struct {
	OSFS
	beforeRename func(oldpath string)
}

func (h hookFS) Rename(oldpath, newpath string) error {
	if h.beforeRename != nil {
		h.beforeRename(oldpath)
	}
	return h.OSFS.Rename(oldpath, newpath)
}

// TestCreateWhileDeleting: a topic is not created again while DeleteTopic
// is still moving its directories away: the new partitions would open the
// old data, and the deletion would then take the new topic's directories.
func TestCreateWhileDeleting(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	fs := hookFS{beforeRename: func(old string) {
		if filepath.Base(old) == "t-0" {
			once.Do(func() { close(entered); <-release })
		}
	}}
	l := openTestLog(t, Options{FS: fs})
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := l.Partition("t", 0)
	if _, err := p.Append(AppendBatch(nil, []Record{{Value: []byte("old")}})); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error)
	go func() { deleted <- l.DeleteTopic("t") }()
	<-entered
	if _, err := l.CreateTopic("t", 1, nil); !errors.Is(err, ErrTopicExists) {
		t.Errorf("CreateTopic while the old topic's directories are being removed: %v, want ErrTopicExists", err)
	}
	close(release)
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	if _, err := l.CreateTopic("t", 1, nil); err != nil {
		t.Fatalf("CreateTopic once deleted: %v", err)
	}
	if p, _ := l.Partition("t", 0); p.EndOffset() != 0 {
		t.Errorf("the new topic starts with %d old records", p.EndOffset())
	}
}
