package gatewayapi

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/placement"
)

// Two tenants' names over two storages of two stores each, plus a
// wildcard: routing by Host, 421 for unknown names, 403 for a storage the
// name does not expose, CORS per rule, and a reload.
func TestRulesByHost(t *testing.T) {
	c := newCluster(t, 4, func(o *Options) {
		o.Storages = []placement.Storage{{Name: "tenant-a", Stores: o.Services[:2]}, {Name: "tenant-b", Stores: o.Services[2:]}}
		o.DefaultStorage = "tenant-a"
		o.Auth = staticAuth{
			tokRW:  {Name: "rw", Source: "token-file", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}},
			"keyB": {Name: "key-b", Source: "access-key", Storage: "tenant-b", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}},
		}
		o.Rules = []placement.Rule{
			{Name: "a", Hosts: []string{"keep.a.example.org", "*.a.example.org"}, Storages: []string{"tenant-a"}, DefaultStorage: "tenant-a", CORSOrigins: []string{"https://upload.a.example.org"}},
			{Name: "b", Hosts: []string{"keep.b.example.org"}, Storages: []string{"tenant-b"}, DefaultStorage: "tenant-b"},
		}
	})
	put := func(host, token string, seed uint64) (*http.Response, string) {
		data, h := volumetest.Block(seed, 500)
		resp := c.do("PUT", "/"+h.String(), token, data, map[string]string{"Host": host})
		return resp, readAll(t, resp)
	}
	// Host forms are normalised: port, case, trailing dot; wildcards match.
	for i, host := range []string{"keep.a.example.org", "KEEP.A.Example.org.:443", "x.y.a.example.org"} {
		resp, body := put(host, tokRW, uint64(100+i))
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", host, resp.StatusCode, body)
		}
	}
	// A token-file principal through tenant b's name uses tenant-b.
	data, h := volumetest.Block(200, 500)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"Host": "keep.b.example.org", "X-Keep-Desired-Replicas": "2"})
	readAll(t, resp)
	if resp.StatusCode != 200 || !c.stores[2].has(h) || !c.stores[3].has(h) || c.stores[0].has(h) || c.stores[1].has(h) {
		t.Fatalf("token-file PUT through b's name: %d, not on tenant-b's stores", resp.StatusCode)
	}
	// An access key of tenant-b through a's name: 403 naming host and storage.
	if resp, body := put("keep.a.example.org", "keyB", 300); resp.StatusCode != 403 || !strings.Contains(body, "host keep.a.example.org does not serve storage tenant-b") {
		t.Fatalf("key of b through a's name: %d %q", resp.StatusCode, body)
	}
	if resp, _ := put("keep.b.example.org", "keyB", 301); resp.StatusCode != 200 {
		t.Fatalf("key of b through b's name: %d", resp.StatusCode)
	}
	// Unknown names, a wildcard's bare suffix, no Host: 421 before authentication.
	for _, host := range []string{"evil.example.org", "a.example.org", "[::1]:25107"} {
		resp, body := put(host, "no-such-token", 400)
		if resp.StatusCode != 421 || !strings.Contains(body, "Misdirected Request") {
			t.Fatalf("%s: %d %q", host, resp.StatusCode, body)
		}
	}
	// Health checks answer whatever the name.
	if resp := c.do("GET", "/_health/ping", "", nil, map[string]string{"Host": "10.0.0.1"}); resp.StatusCode == 421 {
		t.Fatal("health check got 421")
	}
	// CORS: a's own origin is granted, another origin is not; b (no origins
	// listed) grants every origin as without rules.
	cors := func(host, origin string) string {
		resp := c.do("OPTIONS", "/", "", nil, map[string]string{"Host": host, "Origin": origin, "Access-Control-Request-Method": "PUT"})
		readAll(t, resp)
		return resp.Header.Get("Access-Control-Allow-Origin")
	}
	if got := cors("keep.a.example.org", "https://upload.a.example.org"); got != "https://upload.a.example.org" {
		t.Errorf("a's origin through a: %q", got)
	}
	if got := cors("keep.a.example.org", "https://evil.example"); got != "" {
		t.Errorf("another origin through a: %q", got)
	}
	if got := cors("keep.b.example.org", "https://anything.example"); got != "*" {
		t.Errorf("through b (no origins listed): %q", got)
	}
	// Reload: a fallback rule for unknown names, and b gone.
	c.gw.SetRules([]placement.Rule{{Name: "a", Hosts: []string{"keep.a.example.org"}, Storages: []string{"tenant-a"}, DefaultStorage: "tenant-a"}}, "a")
	if resp, _ := put("evil.example.org", tokRW, 500); resp.StatusCode != 200 {
		t.Fatalf("unknown name with a fallback rule: %d", resp.StatusCode)
	}
	if resp, _ := put("keep.b.example.org", "keyB", 501); resp.StatusCode != 403 {
		t.Fatalf("b's key after b's rule was removed (falls back to a): %d", resp.StatusCode)
	}
	// No rules: every name, as before.
	c.gw.SetRules(nil, "")
	if resp, _ := put("whatever.example", tokRW, 502); resp.StatusCode != 200 {
		t.Fatalf("without rules: %d", resp.StatusCode)
	}
}
