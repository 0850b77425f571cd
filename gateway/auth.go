package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/keepgate/keepgate/blockstore"
)

// Scope is one permission a token can carry.
type Scope string

// Scopes enforced by the gateway.
const (
	ScopeRead  Scope = "read"  // GET, HEAD
	ScopeWrite Scope = "write" // PUT, POST
	ScopeAdmin Scope = "admin" // /index
)

// Identity is what a token resolves to.
type Identity struct {
	Name   string // for logs and usage reports; never the token
	Scopes []Scope
	// Source names the authenticator that accepted the token:
	// "token-file", "api" or "access-key".
	Source string
	// Storage is the one storage an access key is bound to ("" for the
	// other sources: they use the default storage).
	Storage string
	// UID is an access key's immutable uid: the locators keepproxy signs
	// for the key are signed for it, not for the secret.
	UID string
	// Expires: an access key's expiry (zero: none); the locators signed
	// for the key expire no later.
	Expires time.Time
	// NoAudit: the key's configuration.server.activity_event_logging is
	// off, so its transfers are not written to the audit log.
	NoAudit bool
}

// Has reports whether the identity carries scope s (admin implies all).
func (id *Identity) Has(s Scope) bool {
	for _, x := range id.Scopes {
		if x == s || x == ScopeAdmin {
			return true
		}
	}
	return false
}

// Authenticator resolves an API token to an identity.
//
// Contract: an unknown, revoked or malformed token is an error of kind
// blockstore.KindForbidden; a failure to decide (e.g. the API server is
// down) is KindUnavailable or KindBadGateway. Implementations must be safe
// for concurrent use and must never log the token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Identity, error)
}

// ErrBadToken is returned for unknown tokens.
var ErrBadToken = &blockstore.Error{Kind: blockstore.KindForbidden, Msg: "Missing or invalid Authorization header, or method not allowed: send 'Authorization: Bearer <token>' with a valid token"}

// TokenID is the safe form of a token for cache keys and logs: the first
// 12 hex digits of its SHA-256.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// FinalRefusal is a refusal no later authenticator may overturn: the
// credential was recognised (an access key's id with its right secret)
// but may not be used (revoked, disabled, expired). Its message may say
// why, since the caller proved it holds the secret.
type FinalRefusal struct{ Err *blockstore.Error }

func (f *FinalRefusal) Error() string { return f.Err.Error() }
func (f *FinalRefusal) Unwrap() error { return f.Err }

// Chain tries authenticators in order; the first that accepts the token
// wins. If none accepts it and one could not decide, that failure is
// returned; otherwise ErrBadToken.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, token string) (*Identity, error) {
	var undecided error
	for _, a := range c {
		id, err := a.Authenticate(ctx, token)
		if err == nil {
			return id, nil
		}
		var final *FinalRefusal
		if errors.As(err, &final) {
			return nil, err
		}
		if !blockstore.Is(err, blockstore.KindForbidden) && undecided == nil {
			undecided = err
		}
	}
	if undecided != nil {
		return nil, undecided
	}
	return nil, ErrBadToken
}

// Cache wraps an Authenticator with a bounded TTL cache keyed by the
// token's SHA-256 (the raw token is never stored). Rejections are cached
// for NegativeTTL; concurrent first look-ups of one token cause a single
// call to the wrapped authenticator. A revoked token keeps working for at
// most TTL.
type Cache struct {
	next  Authenticator
	pos   *expirable.LRU[[32]byte, *Identity]
	neg   *expirable.LRU[[32]byte, error]
	group singleflight.Group
	log   *slog.Logger
	// Lookups counts calls to the wrapped authenticator (for tests/metrics).
	Lookups func()
}

// NewCache returns a cache of at most size entries.
func NewCache(next Authenticator, size int, ttl, negativeTTL time.Duration, log *slog.Logger) *Cache {
	if size <= 0 {
		size = 1000
	}
	if negativeTTL <= 0 {
		negativeTTL = time.Second
	}
	return &Cache{
		next: next,
		pos:  expirable.NewLRU[[32]byte, *Identity](size, nil, ttl),
		neg:  expirable.NewLRU[[32]byte, error](size, nil, negativeTTL),
		log:  log,
	}
}

// Authenticate implements Authenticator.
func (c *Cache) Authenticate(ctx context.Context, token string) (*Identity, error) {
	if token == "" {
		return nil, ErrBadToken
	}
	key := sha256.Sum256([]byte(token))
	if id, ok := c.pos.Get(key); ok {
		return id, nil
	}
	if err, ok := c.neg.Get(key); ok {
		return nil, err
	}
	v, err, _ := c.group.Do(string(key[:]), func() (any, error) {
		if c.Lookups != nil {
			c.Lookups()
		}
		// Detach from the first caller's cancellation: others share the result.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		id, err := c.next.Authenticate(lctx, token)
		if err != nil {
			c.neg.Add(key, err)
			return nil, err
		}
		c.pos.Add(key, id)
		return id, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(*Identity), nil
}

// Purge empties the cache (e.g. after a token file reload).
func (c *Cache) Purge() {
	c.pos.Purge()
	c.neg.Purge()
}
