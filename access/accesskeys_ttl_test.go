package access

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/sqlite"
)

// flaky is a store whose look-ups fail while down is set.
type flaky struct {
	state.Store
	down atomic.Bool
	gets atomic.Int64
}

func (f *flaky) GetKey(ctx context.Context, id string) (state.Key, error) {
	f.gets.Add(1)
	if f.down.Load() {
		return state.Key{}, errors.New("dial tcp 10.0.0.9:5432: connection refused")
	}
	return f.Store.GetKey(ctx, id)
}

// With a TTL (several proxies): cached keys are trusted for the TTL, also
// while the database is down; unknown ones get 503 + Retry-After; the
// outage is logged once; Purge drops everything.
func TestAccessKeysTTLAndOutage(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := Hasher{Pepper: []byte("pepper-0123456789")}
	now := time.Now()
	for _, id := range []string{"cached", "other"} {
		db.CreateKey(ctx, state.Key{ID: id, UID: "uid-" + id, Storage: "tenant-a", Scopes: []string{"read"}, CreatedAt: now,
			SecretHash: h.Hash("secret-of-" + id), RateCapKbps: 8000, MaxConcurrent: 3})
	}
	st := &flaky{Store: db}
	var logs bytes.Buffer
	a := NewAccessKeys(st, h)
	a.TTL, a.Log = time.Minute, slog.New(slog.NewTextHandler(&logs, nil))
	clock := now
	a.Now = func() time.Time { return clock }
	tok := Token("cached", "secret-of-cached")
	if _, err := a.Authenticate(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if l, ok := a.LimitsOf(ctx, "access-key", "cached"); !ok || l.RateOutKbps != 8000 || l.MaxConcurrent != 3 {
		t.Fatalf("limits: %+v %v", l, ok)
	}
	if _, ok := a.LimitsOf(ctx, "token-file", "cached"); ok {
		t.Fatal("a token-file principal has limits")
	}
	st.down.Store(true)
	for i := 0; i < 3; i++ {
		if _, err := a.Authenticate(ctx, tok); err != nil {
			t.Fatalf("a cached key while the database is down: %v", err)
		}
		_, err := a.Authenticate(ctx, Token("other", "secret-of-other"))
		if !blockstore.Is(err, blockstore.KindOverloaded) || !blockstore.KindOf(err).RetryAfter() || strings.Contains(blockstore.Message(err), "10.0.0.9") {
			t.Fatalf("an uncached key while the database is down: %v", err)
		}
	}
	clock = clock.Add(61 * time.Second) // past the TTL: the database is needed again
	if _, err := a.Authenticate(ctx, tok); !blockstore.Is(err, blockstore.KindOverloaded) {
		t.Fatalf("a key past its TTL with the database down: %v", err)
	}
	if n := strings.Count(logs.String(), "state database is unreachable"); n != 1 {
		t.Fatalf("the outage was logged %d times:\n%s", n, logs.String())
	}
	st.down.Store(false)
	if _, err := a.Authenticate(ctx, tok); err != nil || !strings.Contains(logs.String(), "reachable again") {
		t.Fatalf("after the outage: %v\n%s", err, logs.String())
	}
	before := st.gets.Load()
	a.Authenticate(ctx, tok)
	if st.gets.Load() != before {
		t.Fatal("a fresh cached key was looked up again")
	}
	a.Purge()
	a.Authenticate(ctx, tok)
	if st.gets.Load() != before+1 {
		t.Fatal("Purge kept the cached key")
	}
}
