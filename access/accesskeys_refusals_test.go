package access

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/sqlite"
)

// The access-key authenticator on a real SQLite state: every refusal, the
// overlap of a rotated secret, and changes that count from the next call.
func TestAccessKeyRefusals(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := Hasher{Pepper: []byte("pepper-0123456789")}
	now := time.Now()
	mk := func(id string, f func(*state.Key)) {
		k := state.Key{ID: id, UID: "uid-" + id, Storage: "tenant-a", Scopes: []string{"read", "write"}, CreatedAt: now,
			SecretHash: h.Hash("secret-of-" + id), AuditEvents: true}
		if f != nil {
			f(&k)
		}
		if err := db.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	mk("good", nil)
	mk("off", func(k *state.Key) { k.Disabled = true })
	mk("old", func(k *state.Key) { k.ExpiresAt = now.Add(-time.Minute) })
	mk("gone", func(k *state.Key) { k.RevokedAt = now })
	mk("rot", func(k *state.Key) {
		k.PrevSecretHash, k.PrevSecretExpiresAt = k.SecretHash, now.Add(time.Hour)
		k.SecretHash = h.Hash("new-secret")
	})
	a := NewAccessKeys(db, h)
	auth := func(tok string) (*Identity, error) { return a.Authenticate(ctx, tok) }

	id, err := auth(Token("good", "secret-of-good"))
	if err != nil || id.Name != "good" || id.Source != "access-key" || id.Storage != "tenant-a" || id.UID != "uid-good" || !id.Has(ScopeWrite) {
		t.Fatalf("good key: %+v %v", id, err)
	}
	_, wrong := auth(Token("good", "not-the-secret"))
	_, unknown := auth(Token("nobody", "secret-of-good"))
	if wrong != ErrBadToken || unknown != ErrBadToken {
		t.Fatalf("wrong secret %v and unknown id %v must be the same refusal", wrong, unknown)
	}
	for id, want := range map[string]string{"off": "access key off is disabled", "old": "access key old expired at", "gone": "access key gone was revoked"} {
		_, err := auth(Token(id, "secret-of-"+id))
		var fr *FinalRefusal
		if !errors.As(err, &fr) || !blockstore.Is(err, blockstore.KindForbidden) || len(blockstore.Message(err)) < len(want) || blockstore.Message(err)[:len(want)] != want {
			t.Errorf("%s: %v, want a final 403 starting %q", id, err, want)
		}
		// Without the secret, nothing is revealed.
		if _, err := auth(Token(id, "guess")); err != ErrBadToken {
			t.Errorf("%s with a wrong secret: %v, want the plain refusal", id, err)
		}
	}
	if _, err := auth(Token("rot", "new-secret")); err != nil {
		t.Fatalf("rotated key, new secret: %v", err)
	}
	if _, err := auth(Token("rot", "secret-of-rot")); err != nil {
		t.Fatalf("rotated key, old secret within the overlap: %v", err)
	}
	a.Now = func() time.Time { return now.Add(2 * time.Hour) }
	if _, err := auth(Token("rot", "secret-of-rot")); err != ErrBadToken {
		t.Fatalf("old secret after the overlap: %v", err)
	}
	a.Now = time.Now

	// A change counts from the next call once the key is invalidated
	// (the admin API does so after every change).
	db.UpdateKey(ctx, "good", func(k *state.Key) error { k.Disabled = true; return nil })
	a.Invalidate("good")
	if _, err := auth(Token("good", "secret-of-good")); !blockstore.Is(err, blockstore.KindForbidden) || err == ErrBadToken {
		t.Fatalf("disabled key right after the change: %v", err)
	}
	// An id created after it was looked up (and remembered as unknown).
	if _, err := auth(Token("late", "secret-of-late")); err != ErrBadToken {
		t.Fatal(err)
	}
	mk("late", nil)
	a.Invalidate("late")
	if _, err := auth(Token("late", "secret-of-late")); err != nil {
		t.Fatalf("a key created after its id was looked up: %v", err)
	}
	// Not an access-key token at all: the chain moves on.
	for _, tok := range []string{"plain-token", "v2/a/b/c", "v2/Bad Id/x"} {
		if _, err := auth(tok); err != ErrBadToken {
			t.Errorf("%q: %v", tok, err)
		}
	}
	// The final refusal stops a chain; a plain one does not.
	chain := Chain{a, staticAuth{"v2/gone/secret-of-gone": {Name: "impostor"}}}
	if _, err := chain.Authenticate(ctx, "v2/gone/secret-of-gone"); err == nil {
		t.Fatal("a revoked key's credential was accepted by a later authenticator")
	}
}
