package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

func TestTokenFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.yml")
	write := func(s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tmp, path)
	}
	write("tokens:\n  - name: alice\n    token: alice-token-1\n    scopes: [read, write]\n")
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tf.Authenticate(context.Background(), "alice-token-1")
	if err != nil || id.Name != "alice" || !id.Has(ScopeWrite) || id.Has(ScopeAdmin) {
		t.Fatalf("alice: %+v %v", id, err)
	}
	if _, err := tf.Authenticate(context.Background(), "bob-token-1"); !blockstore.Is(err, blockstore.KindForbidden) {
		t.Fatalf("unknown token: %v", err)
	}
	reloaded := make(chan struct{}, 10)
	tf.OnReload = func() { reloaded <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tf.Watch(ctx, 20*time.Millisecond)
	write("tokens:\n  - name: bob\n    token: bob-token-1\n    scopes: [read]\n")
	select {
	case <-reloaded:
	case <-time.After(5 * time.Second):
		t.Fatal("token file change not picked up")
	}
	if _, err := tf.Authenticate(context.Background(), "alice-token-1"); err == nil {
		t.Fatal("removed token still accepted")
	}
	if id, err := tf.Authenticate(context.Background(), "bob-token-1"); err != nil || id.Has(ScopeWrite) {
		t.Fatalf("bob: %+v %v", id, err)
	}
	// A broken file is refused; the previous tokens stay.
	write("tokens: [ {name: x, token: short, scopes: [read]} ]\n")
	time.Sleep(200 * time.Millisecond)
	if _, err := tf.Authenticate(context.Background(), "bob-token-1"); err != nil {
		t.Fatalf("after a broken edit the previous tokens must stay: %v", err)
	}
	if err := tf.Reload(); err == nil {
		t.Fatal("broken file accepted")
	}
	for _, bad := range []string{"tokens:\n  - token: abcdefghij\n    scopes: [fly]\n", "tokenz: []\n", "tokens:\n  - token: abcdefghij\n"} {
		write(bad)
		if err := tf.Reload(); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestRemoteAuth(t *testing.T) {
	var calls atomic.Int32
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		tok := r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/arvados/v1/users/current":
			switch tok {
			case "Bearer user-token":
				w.Write([]byte(`{"uuid":"zzzzz-tpzed-000000000000001","is_admin":false}`))
			case "Bearer admin-token":
				w.Write([]byte(`{"uuid":"zzzzz-tpzed-000000000000002","is_admin":true}`))
			case "Bearer scoped-token":
				http.Error(w, "forbidden", 403)
			case "Bearer flaky-token":
				http.Error(w, "oops", 500)
			default:
				http.Error(w, "unauthorized", 401)
			}
		case "/arvados/v1/keep_services/accessible":
			if tok == "Bearer scoped-token" {
				w.Write([]byte(`{"items":[]}`))
				return
			}
			http.Error(w, "forbidden", 403)
		}
	}))
	defer api.Close()
	ra := NewRemoteAuth(api.URL, true)
	ctx := context.Background()
	if id, err := ra.Authenticate(ctx, "user-token"); err != nil || !id.Has(ScopeWrite) || id.Has(ScopeAdmin) {
		t.Fatalf("user: %+v %v", id, err)
	}
	if id, err := ra.Authenticate(ctx, "admin-token"); err != nil || !id.Has(ScopeAdmin) {
		t.Fatalf("admin: %+v %v", id, err)
	}
	if id, err := ra.Authenticate(ctx, "scoped-token"); err != nil || !id.Has(ScopeRead) || id.Has(ScopeWrite) {
		t.Fatalf("scoped: %+v %v", id, err)
	}
	if _, err := ra.Authenticate(ctx, "nope"); !blockstore.Is(err, blockstore.KindForbidden) {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := ra.Authenticate(ctx, "flaky-token"); blockstore.Is(err, blockstore.KindForbidden) || err == nil {
		t.Fatalf("API failure must not look like a bad token: %v", err)
	}
	// Through the gateway: a scoped (read-only) token cannot PUT.
	c := newCluster(t, 1, func(o *Options) { o.Auth = NewCache(ra, 10, time.Minute, time.Second, nil) })
	resp := c.do("PUT", "/6f09f2b353b6d63069f770b90e2b112c", "scoped-token", []byte("hello keep\n"), nil)
	if readAll(t, resp); resp.StatusCode != 403 {
		t.Fatalf("scoped token PUT: %d", resp.StatusCode)
	}
	resp = c.do("PUT", "/6f09f2b353b6d63069f770b90e2b112c", "user-token", []byte("hello keep\n"), map[string]string{"X-Keep-Desired-Replicas": "1"})
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("user token PUT: %d", resp.StatusCode)
	}
	before := calls.Load()
	for i := 0; i < 5; i++ {
		resp = c.do("HEAD", "/6f09f2b353b6d63069f770b90e2b112c+11", "user-token", nil, nil)
		readAll(t, resp)
	}
	if calls.Load() != before {
		t.Fatalf("cached token re-validated %d times", calls.Load()-before)
	}
}

// The token file holds every API token: a mode that lets other users read
// it is refused at start and on reload (the previous tokens stay), with a
// message naming the file and the chmod to run.
func TestTokenFileModeChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yml")
	if err := os.WriteFile(path, []byte("tokens:\n  - name: a\n    token: a-token-123\n    scopes: [read]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	_, err := LoadTokenFile(path, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("mode 0644: %v", err)
	}
	os.Chmod(path, 0o640) // group-readable, like the other secret files, is allowed
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o604)
	if err := tf.Reload(); err == nil {
		t.Fatal("reload of a world-readable token file succeeded")
	}
	if _, err := tf.Authenticate(context.Background(), "a-token-123"); err != nil {
		t.Fatalf("previous tokens lost after a refused reload: %v", err)
	}
}

// keepproxy_auth_lookups_total counts the look-ups that missed the cache.
func TestAuthLookupsMetric(t *testing.T) {
	cache := NewCache(staticAuth{tokRW: {Name: "rw", Scopes: []Scope{ScopeRead, ScopeWrite}}}, 10, time.Minute, time.Second, nil)
	c := newCluster(t, 1, func(o *Options) { o.Auth = cache })
	for i := 0; i < 3; i++ {
		c.do("GET", "/"+blockstore.EmptyLocator, tokRW, nil, nil).Body.Close()
	}
	c.do("GET", "/"+blockstore.EmptyLocator, "unknown-token-1", nil, nil).Body.Close()
	mfs, err := c.gw.opt.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keepproxy_auth_lookups_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Fatalf("auth look-ups: %v, want 2 (one per distinct token)", v)
			}
			return
		}
	}
	t.Fatal("no keepproxy_auth_lookups_total")
}
