package gatewayapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
)

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
	ra := access.NewRemoteAuth(api.URL, true)
	ctx := context.Background()
	if id, err := ra.Authenticate(ctx, "user-token"); err != nil || !id.Has(access.ScopeWrite) || id.Has(access.ScopeAdmin) {
		t.Fatalf("user: %+v %v", id, err)
	}
	if id, err := ra.Authenticate(ctx, "admin-token"); err != nil || !id.Has(access.ScopeAdmin) {
		t.Fatalf("admin: %+v %v", id, err)
	}
	if id, err := ra.Authenticate(ctx, "scoped-token"); err != nil || !id.Has(access.ScopeRead) || id.Has(access.ScopeWrite) {
		t.Fatalf("scoped: %+v %v", id, err)
	}
	if _, err := ra.Authenticate(ctx, "nope"); !blockstore.Is(err, blockstore.KindForbidden) {
		t.Fatalf("bad token: %v", err)
	}
	if _, err := ra.Authenticate(ctx, "flaky-token"); blockstore.Is(err, blockstore.KindForbidden) || err == nil {
		t.Fatalf("API failure must not look like a bad token: %v", err)
	}
	// Through the gateway: a scoped (read-only) token cannot PUT.
	c := newCluster(t, 1, func(o *Options) { o.Auth = access.NewCache(ra, 10, time.Minute, time.Second, nil) })
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

// keepproxy_auth_lookups_total counts the look-ups that missed the cache.
func TestAuthLookupsMetric(t *testing.T) {
	cache := access.NewCache(staticAuth{tokRW: {Name: "rw", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}}}, 10, time.Minute, time.Second, nil)
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
