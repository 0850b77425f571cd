package postgres

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/statetest"
)

func open(t *testing.T, dsn string) *DB {
	t.Helper()
	db, err := Open(context.Background(), dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	statetest.Run(t, statetest.Engine{
		Open: func(t *testing.T) state.Store { return open(t, testenv.NewDatabase(t)) },
		Reopen: func(t *testing.T, s state.Store) state.Store {
			cfg := s.(*DB).cfg.ConnConfig
			s.Close()
			return open(t, cfg.ConnString())
		},
	})
}

// Unreachable at start: a clear error naming the host, never the password.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	addr := testenv.FreeAddr(t) // nothing listens there
	_, err := Open(ctx, "postgres://keepgate:s3cret-pass-word@"+addr+"/keepgate?sslmode=disable&connect_timeout=2", nil)
	if err == nil || !strings.Contains(err.Error(), "PostgreSQL at "+addr+"/keepgate is unreachable") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("unreachable: %v", err)
	}
	if _, err := Open(ctx, "postgres://keepgate:s3cret@[bad", nil); err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "does not parse") {
		t.Fatalf("bad DSN: %v", err)
	}
}

// Two proxies' connections: a change through one is pushed to the
// other's watcher; a killed listener connection resets and reconnects.
func TestWatchKeys(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	a, b := open(t, dsn), open(t, dsn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changed, resets := make(chan string, 10), make(chan struct{}, 10)
	go b.WatchKeys(ctx, func(id string) { changed <- id }, func() { resets <- struct{}{} })
	<-resets // listening
	if err := a.CreateKey(ctx, statetest.Key("pushed", "tenant-a")); err != nil {
		t.Fatal(err)
	}
	if id := <-changed; id != "pushed" {
		t.Fatalf("pushed %q", id)
	}
	a.UpdateKey(ctx, "pushed", func(k *state.Key) error { k.Disabled = true; return nil })
	if id := <-changed; id != "pushed" {
		t.Fatalf("pushed %q", id)
	}
	// An aborted update notifies nobody; the next one does.
	a.UpdateKey(ctx, "pushed", func(k *state.Key) error { return state.ErrExists })
	a.UpdateKey(ctx, "pushed", func(k *state.Key) error { k.Description = "x"; return nil })
	if id := <-changed; id != "pushed" {
		t.Fatal(id)
	}
	select {
	case id := <-changed:
		t.Fatalf("an extra notification %q", id)
	default:
	}
	// Kill the listener's connection from the server side.
	srv := testenv.StartPostgres(t)
	db := b.cfg.ConnConfig.Database
	srv.Exec(t, "postgres", `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = 'keepgate-listener'`, db)
	<-resets // reconnected, cache to be dropped
	a.UpdateKey(ctx, "pushed", func(k *state.Key) error { k.Description = "after"; return nil })
	if id := <-changed; id != "pushed" {
		t.Fatal(id)
	}
}

// Proxies that start together migrate once.
func TestConcurrentMigrations(t *testing.T) {
	dsn := testenv.NewDatabase(t)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := Open(context.Background(), dsn, nil)
			if err == nil {
				db.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
