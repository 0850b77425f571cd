// Package state is keepproxy's shared state: access keys, usage rows and
// proxies' heartbeats. One interface, several engines (embedded
// SQLite in state/sqlite by default; PostgreSQL when several proxies share
// one database), one conformance suite every engine passes
// (state/statetest).
//
// A key's secret is never stored: only SecretHash, an HMAC-SHA256 of it
// under a pepper kept outside the database (see package access).
package state

import (
	"context"
	"errors"
	"time"
)

// Errors every engine returns (compare with errors.Is).
var (
	// ErrNotFound: no key has that id.
	ErrNotFound = errors.New("no such access key")
	// ErrExists: a key with that id exists or existed (ids are never
	// reused, so a re-created name cannot inherit old capabilities).
	ErrExists = errors.New("an access key with this id exists or existed; ids are never reused")
)

// Key is an access key as stored.
type Key struct {
	ID string
	// UID is immutable and never shown to clients; locators are signed
	// for it, so rotating the secret keeps them valid and revoking the
	// key kills them.
	UID         string
	Storage     string
	Scopes      []string // "read", "write"
	Description string
	CreatedAt   time.Time
	ExpiresAt   time.Time // zero: never
	RevokedAt   time.Time // zero: not revoked
	Disabled    bool
	LastUsedAt  time.Time // zero: never used

	SecretHash []byte
	// PrevSecretHash is the secret before the last rotation, valid until
	// PrevSecretExpiresAt.
	PrevSecretHash      []byte
	PrevSecretExpiresAt time.Time

	// Limits (0: none), and whether the key's transfers are audited.
	RateCapKbps   int64 // what the key receives (GET bodies), 1 kbps = 1,000 bit/s
	RateInCapKbps int64 // what it sends (PUT/POST bodies)
	MaxConcurrent int
	AuditEvents   bool

	// Version increases with every update (a cache can tell a stale copy).
	Version int64
}

// Store holds the keys, and usage (UsageStore). Contract for every engine:
//   - CreateKey stores k (Version 1) or returns ErrExists when the id exists
//     or ever existed; nothing is half-created.
//   - GetKey returns a copy or ErrNotFound; a revoked key is still found.
//   - ListKeys returns keys in id order, of one storage when storage is
//     not "", revoked ones only when includeRevoked.
//   - UpdateKey reads the key, calls f on a copy and stores the result
//     (Version+1) in one transaction; concurrent updates of one key are
//     serialised, none is lost. f's error aborts and is returned as is.
//     The ID, UID and CreatedAt cannot change.
//   - TouchKeys sets LastUsedAt of each key (later times win, unknown ids
//     are ignored), without bumping Version.
//   - Every method honours ctx; errors other than the ones above name
//     the engine's resource (the file, the database) and what to do.
type Store interface {
	CreateKey(ctx context.Context, k Key) error
	GetKey(ctx context.Context, id string) (Key, error)
	ListKeys(ctx context.Context, storage string, includeRevoked bool) ([]Key, error)
	UpdateKey(ctx context.Context, id string, f func(*Key) error) (Key, error)
	TouchKeys(ctx context.Context, used map[string]time.Time) error
	UsageStore
	Close() error
}

// UsageRow is one hour of one principal's usage of one storage, as one
// proxy counted it (AddUsage) or summed over proxies (QueryUsage).
type UsageRow struct {
	AccessKey string    // the principal's id (an access key's id; a token-file or API principal's name)
	Storage   string    // the storage used
	Hour      time.Time // UTC start of the hour (of the day, for a daily query)

	BytesIn             int64 // request body bytes received from the client (PUT, POST)
	BytesOut            int64 // block bytes sent in GET bodies
	BlocksIn            int64 // blocks stored (PUT, POST answered 200)
	BlocksOut           int64 // GETs answered 200 or 206
	ReplicaBytesWritten int64 // bytes written to keepstores: block size × replicas stored
	Requests            int64
	Errors4xx           int64
	Errors5xx           int64
}

// Add adds o's counts to u's.
func (u *UsageRow) Add(o UsageRow) {
	u.BytesIn += o.BytesIn
	u.BytesOut += o.BytesOut
	u.BlocksIn += o.BlocksIn
	u.BlocksOut += o.BlocksOut
	u.ReplicaBytesWritten += o.ReplicaBytesWritten
	u.Requests += o.Requests
	u.Errors4xx += o.Errors4xx
	u.Errors5xx += o.Errors5xx
}

// Flush identifies one flush of usage counts: a proxy (its proxy_id), the
// process instance (random, chosen at start, so two lives of one proxy
// never share a sequence), and the instance's flush sequence (1, 2, ...).
type Flush struct {
	Proxy    string
	Instance string
	Seq      int64
}

// UsageFilter selects usage rows. From and To bound the hours: a row
// counts when From ≤ Hour < To. "" matches every storage or key.
type UsageFilter struct {
	Storage   string
	AccessKey string
	From, To  time.Time
	Daily     bool // sum the hours of each UTC day into one row (Hour the day's start)
}

// UsageStore keeps usage rows and proxies' heartbeats. Contract for every
// engine:
//   - AddUsage adds rows to the hourly rows keyed by (AccessKey, Storage,
//     Hour, f.Proxy) — additive upserts — and records f in the same
//     transaction. A flush whose (Proxy, Instance) already recorded Seq or
//     a later one is a no-op returning nil: a flush retried after an
//     ambiguous commit is counted exactly once. Rows with a zero Hour are
//     refused; Hour is truncated to the hour.
//   - QueryUsage sums the rows of every proxy and returns one row per
//     (hour or day, storage, key), in that order, never nil.
//   - Heartbeat records that proxy is alive now (the engine's clock) and
//     returns how many proxies, itself included, beat within within.
type UsageStore interface {
	AddUsage(ctx context.Context, f Flush, rows []UsageRow) error
	QueryUsage(ctx context.Context, f UsageFilter) ([]UsageRow, error)
	Heartbeat(ctx context.Context, proxy string, within time.Duration) (live int, err error)
}

// KeyWatcher is implemented by engines that push key changes made by
// other processes (PostgreSQL's LISTEN/NOTIFY). WatchKeys runs until ctx
// ends: it calls changed(id) for every key created, changed, rotated or
// revoked by anyone, and reset() whenever changes may have been missed
// (at start, and each time its connection is re-established), so the
// caller drops everything it cached. It retries a lost connection with
// back-off by itself.
type KeyWatcher interface {
	WatchKeys(ctx context.Context, changed func(id string), reset func()) error
}
