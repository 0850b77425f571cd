// Package state is keepproxy's shared state: access keys now; usage rows
// and proxies' heartbeats next. One interface, several engines (embedded
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

// Store holds the keys. Contract for every engine:
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
	Close() error
}
