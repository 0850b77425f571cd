// Package postgres is the state engine for several keepproxies sharing
// one PostgreSQL database (jackc/pgx/v5, pooled), migrated from the
// embedded SQL files at open (goose, with a session lock so proxies
// starting together migrate once).
//
// Every change of a key is announced with NOTIFY keepgate_keys (payload:
// the key's id) in the transaction that makes it, so it reaches the other
// proxies' WatchKeys exactly when it is committed.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/internal/sqlrow"
)

//go:embed migrations/*.sql
var migrations embed.FS

// channel is the NOTIFY channel of key changes.
const channel = "keepgate_keys"

// PostgreSQL error codes decided on (errors.As on *pgconn.PgError).
const (
	codeUniqueViolation = "23505"
)

// DB is a state.Store on one PostgreSQL database.
type DB struct {
	pool   *pgxpool.Pool
	cfg    *pgxpool.Config
	where  string // "PostgreSQL at HOST:PORT/DB": names the database, never the password
	secret string // the password, scrubbed from every error text
	log    *slog.Logger
}

var (
	_ state.Store      = (*DB)(nil)
	_ state.KeyWatcher = (*DB)(nil)
)

// Open connects to the database of dsn (a URL or key=value connection
// string), checks it answers within 10 s, and brings its schema up to
// date. Its errors name the host and database, never the password.
func Open(ctx context.Context, dsn string, log *slog.Logger) (*DB, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(strings.TrimSpace(dsn))
	if err != nil {
		return nil, errors.New("the PostgreSQL connection string (state.dsn_file) does not parse: want postgres://USER:PASSWORD@HOST:5432/DB?sslmode=verify-full or host=... dbname=... key=value pairs")
	}
	cc := cfg.ConnConfig
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "keepgate"
	}
	d := &DB{cfg: cfg, secret: cc.Password, log: log,
		where: fmt.Sprintf("PostgreSQL at %s/%s", net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))), cc.Database)}
	if d.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, d.wrap("connect", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := d.pool.Ping(pctx); err != nil {
		d.pool.Close()
		return nil, fmt.Errorf("%s is unreachable (%s): is the server up, and do the DSN's host, port, user and database match it?", d.where, d.scrub(rootCause(err).Error()))
	}
	if err := d.migrate(ctx); err != nil {
		d.pool.Close()
		return nil, err
	}
	return d, nil
}

func (d *DB) migrate(ctx context.Context) error {
	sub, _ := fs.Sub(migrations, "migrations")
	locker, err := lock.NewPostgresSessionLocker()
	if err != nil {
		return d.wrap("migrate", err)
	}
	db := stdlib.OpenDBFromPool(d.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, sub, goose.WithDisableGlobalRegistry(true), goose.WithSessionLocker(locker))
	if err != nil {
		return d.wrap("migrate", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("%s cannot be migrated to keepgate's schema (%s): does the DSN's user own the database?", d.where, d.scrub(rootCause(err).Error()))
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

// scrub removes the password from s.
func (d *DB) scrub(s string) string {
	if d.secret == "" {
		return s
	}
	return strings.ReplaceAll(s, d.secret, "********")
}

// Where names the database (host, port, database), for logs.
func (d *DB) Where() string { return d.where }

// Close closes the pool.
func (d *DB) Close() error {
	d.pool.Close()
	return nil
}

// wrap names the database and what failed; context errors and the state
// errors pass as they are.
func (d *DB) wrap(op string, err error) error {
	if err == nil || errors.Is(err, state.ErrNotFound) || errors.Is(err, state.ErrExists) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &dbError{msg: fmt.Sprintf("%s: %s: %s", d.where, op, d.scrub(err.Error())), err: err}
}

// dbError keeps the cause for errors.As while its text is scrubbed.
type dbError struct {
	msg string
	err error
}

func (e *dbError) Error() string { return e.msg }
func (e *dbError) Unwrap() error { return e.err }

func scanKey(row sqlrow.Row) (state.Key, error) {
	k, err := sqlrow.ScanKey(row.Scan)
	if errors.Is(err, pgx.ErrNoRows) {
		return k, state.ErrNotFound
	}
	return k, err
}

// CreateKey implements state.Store.
func (d *DB) CreateKey(ctx context.Context, k state.Key) error {
	k.Version = 1
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO access_keys (`+sqlrow.KeyColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)`, sqlrow.KeyArgs(k)...); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, k.ID)
		return err
	})
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == codeUniqueViolation {
		return state.ErrExists
	}
	return d.wrap("create key", err)
}

// GetKey implements state.Store.
func (d *DB) GetKey(ctx context.Context, id string) (state.Key, error) {
	k, err := scanKey(d.pool.QueryRow(ctx, `SELECT `+sqlrow.KeyColumns+` FROM access_keys WHERE id = $1`, id))
	return k, d.wrap("get key", err)
}

// ListKeys implements state.Store.
func (d *DB) ListKeys(ctx context.Context, storage string, includeRevoked bool) ([]state.Key, error) {
	rows, err := d.pool.Query(ctx, `SELECT `+sqlrow.KeyColumns+` FROM access_keys
		WHERE ($1 = '' OR storage = $1) AND ($2 OR revoked_at = 0) ORDER BY id`, storage, includeRevoked)
	if err != nil {
		return nil, d.wrap("list keys", err)
	}
	defer rows.Close()
	out, err := sqlrow.Collect(rows, scanKey)
	return out, d.wrap("list keys", err)
}

// UpdateKey implements state.Store: the row is locked (SELECT ... FOR
// UPDATE) for the transaction, so concurrent updates of one key queue.
func (d *DB) UpdateKey(ctx context.Context, id string, f func(*state.Key) error) (state.Key, error) {
	var out state.Key
	var fErr error
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		k, err := scanKey(tx.QueryRow(ctx, `SELECT `+sqlrow.KeyColumns+` FROM access_keys WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		before := k
		out = before
		if err := f(&k); err != nil {
			fErr = err
			return err
		}
		k.ID, k.UID, k.CreatedAt, k.Version = before.ID, before.UID, before.CreatedAt, before.Version+1
		a := sqlrow.KeyArgs(k)
		if _, err := tx.Exec(ctx, `UPDATE access_keys SET storage=$1, scopes=$2, description=$3, expires_at=$4, revoked_at=$5, disabled=$6,
			last_used_at=$7, secret_hash=$8, prev_secret_hash=$9, prev_secret_expires_at=$10, rate_cap_kbps=$11, rate_in_cap_kbps=$12,
			max_concurrent=$13, audit_events=$14, version=$15 WHERE id=$16`,
			a[2], a[3], a[4], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15], a[16], a[17], id); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, id); err != nil {
			return err
		}
		out = k
		return nil
	})
	if fErr != nil {
		return out, fErr
	}
	if err != nil {
		return out, d.wrap("update key", err)
	}
	return out, nil
}

// TouchKeys implements state.Store (no notification: nothing a cache
// holds changes).
func (d *DB) TouchKeys(ctx context.Context, used map[string]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	b := &pgx.Batch{}
	for id, t := range used {
		b.Queue(`UPDATE access_keys SET last_used_at = GREATEST(last_used_at, $1) WHERE id = $2`, sqlrow.Nanos(t), id)
	}
	return d.wrap("touch keys", d.pool.SendBatch(ctx, b).Close())
}
