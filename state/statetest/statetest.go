// Package statetest is the conformance suite every state.Store engine
// passes (SQLite now, PostgreSQL next), like blockstore/volumetest for
// volumes.
package statetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/state"
)

// Engine opens a store for a test. Reopen, if not nil, closes s and opens
// the same database again (to check that state survives a restart).
type Engine struct {
	Open   func(t *testing.T) state.Store
	Reopen func(t *testing.T, s state.Store) state.Store
}

// Key returns a complete key with the given id.
func Key(id, storage string) state.Key {
	now := time.Now().UTC().Truncate(time.Microsecond)
	return state.Key{ID: id, UID: "uid-" + id, Storage: storage, Scopes: []string{"read", "write"}, Description: "lab " + id,
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour), SecretHash: []byte("hash-of-" + id), RateCapKbps: 400000,
		RateInCapKbps: 100000, MaxConcurrent: 8, AuditEvents: true}
}

// Run runs the suite.
func Run(t *testing.T, e Engine) {
	ctx := context.Background()
	t.Run("CreateGetList", func(t *testing.T) {
		s := e.Open(t)
		a, b := Key("key-a", "tenant-a"), Key("key-b", "tenant-b")
		for _, k := range []state.Key{b, a} {
			if err := s.CreateKey(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.GetKey(ctx, "key-a")
		a.Version = 1
		if err != nil || !equalKeys(got, a) {
			t.Fatalf("GetKey: %v\n got %+v\nwant %+v", err, got, a)
		}
		if _, err := s.GetKey(ctx, "nope"); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("unknown id: %v, want ErrNotFound", err)
		}
		all, err := s.ListKeys(ctx, "", false)
		if err != nil || len(all) != 2 || all[0].ID != "key-a" || all[1].ID != "key-b" {
			t.Fatalf("ListKeys: %v %+v", err, all)
		}
		if one, _ := s.ListKeys(ctx, "tenant-b", false); len(one) != 1 || one[0].ID != "key-b" {
			t.Fatalf("ListKeys(tenant-b): %+v", one)
		}
		if none, err := s.ListKeys(ctx, "tenant-x", false); err != nil || none == nil || len(none) != 0 {
			t.Fatalf("ListKeys(unknown storage): %v %#v, want an empty list", err, none)
		}
	})
	t.Run("IdsAreNeverReused", func(t *testing.T) {
		s := e.Open(t)
		k := Key("once", "tenant-a")
		if err := s.CreateKey(ctx, k); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateKey(ctx, k); !errors.Is(err, state.ErrExists) {
			t.Fatalf("duplicate id: %v, want ErrExists", err)
		}
		if _, err := s.UpdateKey(ctx, "once", func(k *state.Key) error { k.RevokedAt = time.Now(); return nil }); err != nil {
			t.Fatal(err)
		}
		k2 := Key("once", "tenant-b")
		k2.UID = "another-uid"
		if err := s.CreateKey(ctx, k2); !errors.Is(err, state.ErrExists) {
			t.Fatalf("re-creating a revoked id: %v, want ErrExists", err)
		}
		k3 := Key("other", "tenant-a")
		k3.UID = k.UID
		if err := s.CreateKey(ctx, k3); !errors.Is(err, state.ErrExists) {
			t.Fatalf("duplicate uid: %v, want ErrExists", err)
		}
		if got, _ := s.GetKey(ctx, "once"); got.Storage != "tenant-a" || got.RevokedAt.IsZero() {
			t.Fatalf("the revoked key changed: %+v", got)
		}
		if l, _ := s.ListKeys(ctx, "", false); len(l) != 0 {
			t.Fatalf("revoked keys listed without includeRevoked: %+v", l)
		}
		if l, _ := s.ListKeys(ctx, "", true); len(l) != 1 {
			t.Fatalf("includeRevoked: %+v", l)
		}
	})
	t.Run("Update", func(t *testing.T) {
		s := e.Open(t)
		k := Key("upd", "tenant-a")
		s.CreateKey(ctx, k)
		exp := time.Now().UTC().Add(time.Hour).Truncate(time.Microsecond)
		got, err := s.UpdateKey(ctx, "upd", func(k *state.Key) error {
			k.Scopes, k.Disabled, k.Description = []string{"read"}, true, "changed"
			k.PrevSecretHash, k.SecretHash, k.PrevSecretExpiresAt = k.SecretHash, []byte("new"), exp
			k.ID, k.UID = "hijack", "hijack" // ignored
			return nil
		})
		if err != nil || got.Version != 2 || got.ID != "upd" || got.UID != "uid-upd" {
			t.Fatalf("UpdateKey: %v %+v", err, got)
		}
		again, _ := s.GetKey(ctx, "upd")
		if !equalKeys(again, got) || string(again.PrevSecretHash) != "hash-of-upd" || !again.PrevSecretExpiresAt.Equal(exp) {
			t.Fatalf("stored %+v\nreturned %+v", again, got)
		}
		boom := errors.New("refused")
		if _, err := s.UpdateKey(ctx, "upd", func(k *state.Key) error { k.Description = "lost"; return boom }); err != boom {
			t.Fatalf("f's error: %v", err)
		}
		if k, _ := s.GetKey(ctx, "upd"); k.Description != "changed" || k.Version != 2 {
			t.Fatalf("an aborted update was stored: %+v", k)
		}
		if _, err := s.UpdateKey(ctx, "nope", func(*state.Key) error { return nil }); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("unknown id: %v", err)
		}
	})
	t.Run("ConcurrentUpdatesAreSerialised", func(t *testing.T) {
		s := e.Open(t)
		s.CreateKey(ctx, Key("counter", "tenant-a"))
		var wg sync.WaitGroup
		const n = 40
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := s.UpdateKey(ctx, "counter", func(k *state.Key) error { k.MaxConcurrent++; return nil })
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if k, _ := s.GetKey(ctx, "counter"); k.MaxConcurrent != 8+n || k.Version != 1+n {
			t.Fatalf("after %d concurrent increments: %d (version %d)", n, k.MaxConcurrent, k.Version)
		}
	})
	t.Run("TouchKeys", func(t *testing.T) {
		s := e.Open(t)
		s.CreateKey(ctx, Key("t1", "tenant-a"))
		t1 := time.Now().UTC().Truncate(time.Microsecond)
		if err := s.TouchKeys(ctx, map[string]time.Time{"t1": t1, "unknown": t1}); err != nil {
			t.Fatal(err)
		}
		s.TouchKeys(ctx, map[string]time.Time{"t1": t1.Add(-time.Hour)}) // older: ignored
		if k, _ := s.GetKey(ctx, "t1"); !k.LastUsedAt.Equal(t1) || k.Version != 1 {
			t.Fatalf("LastUsedAt %v version %d, want %v and 1", k.LastUsedAt, k.Version, t1)
		}
	})
	if e.Reopen != nil {
		t.Run("SurvivesRestart", func(t *testing.T) {
			s := e.Open(t)
			for i := 0; i < 10; i++ {
				if err := s.CreateKey(ctx, Key(fmt.Sprintf("k%02d", i), "tenant-a")); err != nil {
					t.Fatal(err)
				}
			}
			s = e.Reopen(t, s)
			if l, err := s.ListKeys(ctx, "tenant-a", false); err != nil || len(l) != 10 {
				t.Fatalf("after a restart: %v, %d keys", err, len(l))
			}
		})
	}
	runUsage(t, e)
	t.Run("ContextCanceled", func(t *testing.T) {
		s := e.Open(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if err := s.CreateKey(cctx, Key("late", "tenant-a")); err == nil {
			t.Fatal("CreateKey with a canceled context succeeded")
		}
		if _, err := s.GetKey(ctx, "late"); !errors.Is(err, state.ErrNotFound) {
			t.Fatalf("a canceled create left a key: %v", err)
		}
	})
}

func equalKeys(a, b state.Key) bool {
	norm := func(k state.Key) state.Key {
		for _, t := range []*time.Time{&k.CreatedAt, &k.ExpiresAt, &k.RevokedAt, &k.LastUsedAt, &k.PrevSecretExpiresAt} {
			*t = t.UTC()
		}
		if len(k.PrevSecretHash) == 0 {
			k.PrevSecretHash = nil
		}
		return k
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
