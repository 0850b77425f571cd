// Package sqlrow is how the SQL state engines (state/sqlite, state/postgres)
// lay an access key out in a row: one column list, one argument order, one
// scan, one time encoding (Unix nanoseconds, 0 for "not set"). Both
// engines use it, so their rows cannot drift apart.
package sqlrow

import (
	"fmt"
	"strings"
	"time"

	"github.com/keepgate/keepgate/state"
)

// Row is one result row of either engine (database/sql's *Row and *Rows,
// pgx's Row and Rows).
type Row interface {
	Scan(dest ...any) error
}

// Rows is a result set of either engine (database/sql's *Rows, pgx.Rows).
type Rows interface {
	Row
	Next() bool
	Err() error
}

// Collect scans every row of rows with scan, stopping at the first error;
// the slice is empty, never nil, when there are no rows. The caller still
// closes rows.
func Collect[T any](rows Rows, scan func(Row) (T, error)) ([]T, error) {
	out := []T{}
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// KeyColumns lists the access_keys columns in the order of KeyArgs and
// ScanKey.
const KeyColumns = `id, uid, storage, scopes, description, created_at, expires_at, revoked_at, disabled, last_used_at,
	secret_hash, prev_secret_hash, prev_secret_expires_at, rate_cap_kbps, rate_in_cap_kbps, max_concurrent, audit_events, version`

// Nanos encodes t (0 for the zero time).
func Nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// FromNanos decodes Nanos.
func FromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// KeyArgs are k's values in KeyColumns order.
func KeyArgs(k state.Key) []any {
	return []any{k.ID, k.UID, k.Storage, strings.Join(k.Scopes, ","), k.Description, Nanos(k.CreatedAt), Nanos(k.ExpiresAt),
		Nanos(k.RevokedAt), k.Disabled, Nanos(k.LastUsedAt), k.SecretHash, k.PrevSecretHash, Nanos(k.PrevSecretExpiresAt),
		k.RateCapKbps, k.RateInCapKbps, k.MaxConcurrent, k.AuditEvents, k.Version}
}

// ScanKey reads a row of KeyColumns through scan (a Row's or Rows' Scan);
// scan's error is returned as it is.
func ScanKey(scan func(dest ...any) error) (state.Key, error) {
	var k state.Key
	var scopes string
	var created, expires, revoked, used, prevExp int64
	err := scan(&k.ID, &k.UID, &k.Storage, &scopes, &k.Description, &created, &expires, &revoked, &k.Disabled, &used,
		&k.SecretHash, &k.PrevSecretHash, &prevExp, &k.RateCapKbps, &k.RateInCapKbps, &k.MaxConcurrent, &k.AuditEvents, &k.Version)
	if err != nil {
		return k, err
	}
	k.Scopes = []string{}
	if scopes != "" {
		k.Scopes = strings.Split(scopes, ",")
	}
	k.CreatedAt, k.ExpiresAt, k.RevokedAt, k.LastUsedAt, k.PrevSecretExpiresAt = FromNanos(created), FromNanos(expires), FromNanos(revoked), FromNanos(used), FromNanos(prevExp)
	return k, nil
}

// FilterValue is v as a query argument for a filter on attr of type typ
// (times as Nanos); a value of another type is an error naming attr.
func FilterValue(attr string, typ state.AttrType, v any) (any, error) {
	switch typ {
	case state.AttrString:
		if s, ok := v.(string); ok {
			return s, nil
		}
	case state.AttrTime:
		if t, ok := v.(time.Time); ok {
			return Nanos(t), nil
		}
	case state.AttrInt:
		if n, ok := v.(int64); ok {
			return n, nil
		}
	case state.AttrBool:
		if b, ok := v.(bool); ok {
			return b, nil
		}
	}
	return nil, fmt.Errorf("filter on %s: value %v has the wrong type", attr, v)
}

// ScanUsage reads a usage row (hour start in Unix seconds, storage, key,
// then the counters in state.UsageRow order) through scan.
func ScanUsage(scan func(dest ...any) error) (state.UsageRow, error) {
	var r state.UsageRow
	var at int64
	err := scan(&at, &r.Storage, &r.AccessKey, &r.BytesIn, &r.BytesOut, &r.BlocksIn, &r.BlocksOut, &r.ReplicaBytesWritten,
		&r.Requests, &r.Errors4xx, &r.Errors5xx)
	r.Hour = time.Unix(at, 0).UTC()
	return r, err
}
