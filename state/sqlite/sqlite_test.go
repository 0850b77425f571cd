package sqlite

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/statetest"
)

func TestConformance(t *testing.T) {
	statetest.Run(t, statetest.Engine{
		Open: func(t *testing.T) state.Store {
			db, err := Open(context.Background(), filepath.Join(t.TempDir(), "state", "keepgate.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		Reopen: func(t *testing.T, s state.Store) state.Store {
			path := s.(*DB).path
			s.Close()
			db, err := Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	})
}

// A second process (or Open) on the same file is refused, not raced.
func TestOneProcessPerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "keepgate.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := Open(context.Background(), path); err == nil || !strings.Contains(err.Error(), "in use by another process") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second open: %v", err)
	}
}

// A file that is not a database, or a directory that cannot be written:
// a clear error naming the file.
func TestBadFiles(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.db")
	os.WriteFile(junk, []byte(strings.Repeat("not a database ", 1000)), 0o600)
	if _, err := Open(context.Background(), junk); err == nil || !strings.Contains(err.Error(), junk) || !strings.Contains(err.Error(), "cannot be used") {
		t.Fatalf("corrupt file: %v", err)
	}
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o500)
	if os.Getuid() != 0 { // root writes anywhere
		if _, err := Open(context.Background(), filepath.Join(ro, "x.db")); err == nil || !strings.Contains(err.Error(), "x.db") {
			t.Fatalf("unwritable directory: %v", err)
		}
	}
}
