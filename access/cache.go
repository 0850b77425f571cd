package access

import (
	"context"
	"crypto/sha256"
	"log/slog"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"
)

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
