package access

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/every"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/usage"
)

// AccessKeys authenticates access keys (v2/<id>/<secret> tokens; Basic
// credentials arrive normalised to that form) against the shared state.
//
// Keys are cached by id, never by secret: a verify is one HMAC and a
// constant-time compare (well under a microsecond), so every request
// checks the secret, the expiry, the revocation and the disabled flag of
// the cached record. Invalidate (called by the admin API after every
// change) drops a record, so a revocation takes effect on the very next
// request. Ids that are not found are remembered for a few seconds, so a
// flood of made-up ids does not reach the database.
//
// With several proxies on one database (PostgreSQL), other proxies'
// changes arrive as pushes (Invalidate per key, Purge when the push
// connection was re-established) and TTL bounds how long a cached record
// is trusted when a push is lost; TTL 0 (SQLite: one process) keeps
// records until invalidated. While the database is unreachable, cached
// records keep working until their TTL and other ids are answered 503 +
// Retry-After; the outage is logged once, and its end once.
//
// An unknown id and a wrong secret give the same error (ErrBadToken, so
// the chain may still try other authenticators, e.g. an Arvados API
// server for its own v2 tokens). A right secret for a revoked, disabled
// or expired key is a FinalRefusal that says which.
type AccessKeys struct {
	Store  state.Store
	Hasher Hasher
	Now    func() time.Time // default time.Now
	TTL    time.Duration    // how long a cached record is trusted; 0: until invalidated
	Log    *slog.Logger     // default: discard

	mu      sync.Mutex
	gen     uint64 // bumped by Invalidate and Purge: a load that raced one is not cached
	keys    map[string]cachedKey
	unknown *expirable.LRU[string, struct{}]
	used    map[string]time.Time
	failing atomic.Bool // the state database failed the last look-up
}

type cachedKey struct {
	k  state.Key
	at time.Time
}

// NewAccessKeys returns an authenticator over store.
func NewAccessKeys(store state.Store, h Hasher) *AccessKeys {
	return &AccessKeys{Store: store, Hasher: h, Now: time.Now, Log: slog.New(slog.DiscardHandler), keys: map[string]cachedKey{},
		unknown: expirable.NewLRU[string, struct{}](10000, nil, 5*time.Second), used: map[string]time.Time{}}
}

// unusable answers a key that may not be used; only a caller holding its
// secret sees it.
func unusable(id, why string) error {
	return &FinalRefusal{Err: &blockstore.Error{Kind: blockstore.KindForbidden, Msg: fmt.Sprintf("access key %s %s", id, why)}}
}

// Authenticate implements Authenticator.
func (a *AccessKeys) Authenticate(ctx context.Context, token string) (*Identity, error) {
	id, secret, ok := ParseToken(token)
	if !ok || ValidID(id) != nil {
		return nil, ErrBadToken
	}
	k, err := a.key(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		a.Hasher.Matches(secret, a.Hasher.Hash("")) // the same work as for a known id
		return nil, ErrBadToken
	}
	if err != nil {
		return nil, blockstore.Errorf(blockstore.KindOverloaded, "access keys cannot be checked right now (the state database is unreachable); retry shortly")
	}
	now := a.Now()
	match := a.Hasher.Matches(secret, k.SecretHash)
	if !match && len(k.PrevSecretHash) > 0 && now.Before(k.PrevSecretExpiresAt) {
		match = a.Hasher.Matches(secret, k.PrevSecretHash)
	}
	switch {
	case !match:
		return nil, ErrBadToken
	case !k.RevokedAt.IsZero():
		return nil, unusable(id, "was revoked")
	case k.Disabled:
		return nil, unusable(id, "is disabled; ask the administrator to enable it")
	case !k.ExpiresAt.IsZero() && !now.Before(k.ExpiresAt):
		return nil, unusable(id, "expired at "+k.ExpiresAt.UTC().Format(time.RFC3339))
	}
	a.mu.Lock()
	a.used[id] = now
	a.mu.Unlock()
	scopes := make([]Scope, 0, len(k.Scopes))
	for _, s := range k.Scopes {
		scopes = append(scopes, Scope(s))
	}
	return &Identity{Name: id, Scopes: scopes, Source: "access-key", Storage: k.Storage, UID: k.UID, Expires: k.ExpiresAt, NoAudit: !k.AuditEvents}, nil
}

func (a *AccessKeys) key(ctx context.Context, id string) (state.Key, error) {
	a.mu.Lock()
	c, ok := a.keys[id]
	gen := a.gen
	a.mu.Unlock()
	if ok && (a.TTL <= 0 || a.Now().Sub(c.at) < a.TTL) {
		return c.k, nil
	}
	if _, ok := a.unknown.Get(id); ok {
		return state.Key{}, state.ErrNotFound
	}
	loadedAt := a.Now()
	k, err := a.Store.GetKey(ctx, id)
	if errors.Is(err, state.ErrNotFound) {
		a.unknown.Add(id, struct{}{})
	}
	if err != nil && !errors.Is(err, state.ErrNotFound) {
		if ctx.Err() == nil && a.failing.CompareAndSwap(false, true) {
			a.Log.Warn("the state database is unreachable: cached access keys keep working until their TTL, others get 503 + Retry-After", "ttl", a.TTL.String(), "error", err.Error())
		}
		return k, err
	}
	if a.failing.CompareAndSwap(true, false) {
		a.Log.Info("the state database is reachable again")
	}
	if err != nil {
		return k, err
	}
	a.mu.Lock()
	if a.gen == gen {
		a.keys[id] = cachedKey{k: k, at: loadedAt}
	}
	a.mu.Unlock()
	return k, nil
}

// Invalidate forgets what is cached about id (after it was created,
// changed, rotated or revoked).
func (a *AccessKeys) Invalidate(id string) {
	a.mu.Lock()
	delete(a.keys, id)
	a.gen++
	a.mu.Unlock()
	a.unknown.Remove(id)
}

// Purge forgets everything cached (the push of other proxies' changes was
// interrupted: some may have been missed).
func (a *AccessKeys) Purge() {
	a.mu.Lock()
	a.keys = map[string]cachedKey{}
	a.gen++
	a.mu.Unlock()
	a.unknown.Purge()
}

// LimitsOf implements usage.Source: an access key's limits, from the
// cache (loaded on a miss).
func (a *AccessKeys) LimitsOf(ctx context.Context, kind, id string) (usage.KeyLimits, bool) {
	if kind != "access-key" {
		return usage.KeyLimits{}, false
	}
	k, err := a.key(ctx, id)
	if err != nil {
		return usage.KeyLimits{}, false
	}
	return usage.KeyLimits{RateOutKbps: k.RateCapKbps, RateInKbps: k.RateInCapKbps, MaxConcurrent: k.MaxConcurrent}, true
}

// FlushUsed writes the last-used times collected since the last flush.
func (a *AccessKeys) FlushUsed(ctx context.Context) error {
	a.mu.Lock()
	used := a.used
	a.used = map[string]time.Time{}
	a.mu.Unlock()
	return a.Store.TouchKeys(ctx, used)
}

// KeepFlushing flushes last-used times every interval until ctx ends, and
// once more then.
func (a *AccessKeys) KeepFlushing(ctx context.Context, interval time.Duration) {
	every.Do(ctx, interval, func(ctx context.Context) { a.FlushUsed(ctx) })
	fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a.FlushUsed(fctx)
}
