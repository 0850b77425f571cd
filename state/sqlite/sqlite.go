// Package sqlite is the embedded state engine: one SQLite file (pure Go,
// modernc.org/sqlite) in WAL mode with a busy timeout and immediate
// transactions, migrated from the embedded SQL files at open.
//
// One process per file: Open takes an exclusive lock on FILE.lock, so a
// second keepproxy on the same file is refused with a clear error instead
// of two writers racing. Never put the file on a network filesystem
// (SQLite's locking does not hold there); several proxies share state
// through PostgreSQL instead.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite" // also the "sqlite" database/sql driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/internal/sqlrow"
)

//go:embed migrations/*.sql
var migrations embed.FS

// DB is a state.Store on one SQLite file.
type DB struct {
	db   *sql.DB
	path string
	lock *os.File
}

var _ state.Store = (*DB)(nil)

// Open opens (creating it and its directory when missing) the state file
// at path and brings its schema up to date.
func Open(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("state file %s: cannot create its directory: %w", path, err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state file %s: cannot open its lock file: %w (is the directory writable by keepproxy's user?)", path, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("state file %s is in use by another process (lock %s.lock held): one keepproxy per SQLite file; several proxies share state through PostgreSQL", path, path)
	}
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(5000)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("state file %s: %w", path, err)
	}
	d := &DB{db: db, path: path, lock: lock}
	if err := d.migrate(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) migrate(ctx context.Context) error {
	sub, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, d.db, sub, goose.WithDisableGlobalRegistry(true))
	if err != nil {
		return fmt.Errorf("state file %s: %w", d.path, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("state file %s cannot be used (%v): is it a keepgate state file, and writable by keepproxy's user?", d.path, rootCause(err))
	}
	return nil
}

func rootCause(err error) error {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err
		}
		err = u
	}
}

// Close closes the database and releases the lock.
func (d *DB) Close() error {
	err := d.db.Close()
	d.lock.Close()
	return err
}

func scanKey(s sqlrow.Row) (state.Key, error) { return sqlrow.ScanKey(s.Scan) }

func (d *DB) wrap(op string, err error) error {
	if err == nil || errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrExists) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("state file %s: %s: %w", d.path, op, err)
}

// CreateKey implements state.Store.
func (d *DB) CreateKey(ctx context.Context, k state.Key) error {
	k.Version = 1
	_, err := d.db.ExecContext(ctx, `INSERT INTO access_keys (`+sqlrow.KeyColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, sqlrow.KeyArgs(k)...)
	var se *sqlite.Error
	if errors.As(err, &se) && (se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY || se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE) {
		return state.ErrExists
	}
	return d.wrap("create key", err)
}

// GetKey implements state.Store.
func (d *DB) GetKey(ctx context.Context, id string) (state.Key, error) {
	k, err := scanKey(d.db.QueryRowContext(ctx, `SELECT `+sqlrow.KeyColumns+` FROM access_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, state.ErrNotFound
	}
	return k, d.wrap("get key", err)
}

// ListKeys implements state.Store.
func (d *DB) ListKeys(ctx context.Context, storage string, includeRevoked bool) ([]state.Key, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+sqlrow.KeyColumns+` FROM access_keys
		WHERE (? = '' OR storage = ?) AND (? OR revoked_at = 0) ORDER BY id`, storage, storage, includeRevoked)
	if err != nil {
		return nil, d.wrap("list keys", err)
	}
	defer rows.Close()
	out, err := sqlrow.Collect(rows, scanKey)
	return out, d.wrap("list keys", err)
}

// UpdateKey implements state.Store.
func (d *DB) UpdateKey(ctx context.Context, id string, f func(*state.Key) error) (state.Key, error) {
	tx, err := d.db.BeginTx(ctx, nil) // _txlock=immediate: the write lock is taken here
	if err != nil {
		return state.Key{}, d.wrap("update key", err)
	}
	defer tx.Rollback()
	k, err := scanKey(tx.QueryRowContext(ctx, `SELECT `+sqlrow.KeyColumns+` FROM access_keys WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return k, state.ErrNotFound
	}
	if err != nil {
		return k, d.wrap("update key", err)
	}
	before := k
	if err := f(&k); err != nil {
		return before, err
	}
	k.ID, k.UID, k.CreatedAt, k.Version = before.ID, before.UID, before.CreatedAt, before.Version+1
	args := sqlrow.KeyArgs(k)
	_, err = tx.ExecContext(ctx, `UPDATE access_keys SET storage=?, scopes=?, description=?, expires_at=?, revoked_at=?, disabled=?,
		last_used_at=?, secret_hash=?, prev_secret_hash=?, prev_secret_expires_at=?, rate_cap_kbps=?, rate_in_cap_kbps=?,
		max_concurrent=?, audit_events=?, version=? WHERE id=?`, append(append(append([]any{}, args[2:5]...), args[6:]...), id)...)
	if err != nil {
		return before, d.wrap("update key", err)
	}
	return k, d.wrap("update key", tx.Commit())
}

// TouchKeys implements state.Store.
func (d *DB) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return d.wrap("touch keys", err)
	}
	defer tx.Rollback()
	for id, t := range used {
		if _, err := tx.ExecContext(ctx, `UPDATE access_keys SET last_used_at = max(last_used_at, ?) WHERE id = ?`, sqlrow.Nanos(t), id); err != nil {
			return d.wrap("touch keys", err)
		}
	}
	return d.wrap("touch keys", tx.Commit())
}
