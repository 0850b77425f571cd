package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// Two tenants' names through the shipped nginx config (one server block
// and certificate per name, a default server answering 421) in front of
// keepproxy with forwarding rules: 1,000 transfers land in the right
// storage, nothing crosses, and every refusal has its status.
func TestRulesThroughNginx(t *testing.T) {
	c := startTenants(t, `rules:
  - name: a
    hosts: [keep.a.test]
    storages: [tenant-a]
    cors_origins: [https://upload.a.test]
  - name: b
    hosts: [keep.b.test]
    storages: [tenant-b]
`)
	addr, _ := testenv.NginxTenants(t, c.ProxyAddr, "keep.a.test", "keep.b.test")
	_, port, _ := strings.Cut(addr, ":")
	client := testenv.TenantClient(addr)
	url := func(name string) string { return "https://" + name + ":" + port }
	idA, secA := c.createKey(t, `{"storage":{"name":"tenant-a"}}`)
	idB, secB := c.createKey(t, `{"storage":{"name":"tenant-b"}}`)
	do := func(method, base, id, secret string, body []byte, hdr ...string) (int, string, http.Header) {
		t.Helper()
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, base, r)
		if id != "" {
			req.SetBasicAuth(id, secret)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b), resp.Header
	}
	type tenant struct {
		name, id, secret string
		stores           []*testenv.Store
	}
	tenants := []tenant{{"keep.a.test", idA, secA, c.Stores[:2]}, {"keep.b.test", idB, secB, c.Stores[2:]}}
	transfers := 0
	for i := 0; transfers < 1000; i++ {
		for ti, tn := range tenants {
			other := tenants[1-ti]
			data, h := volumetest.Block(uint64(60000+2*i+ti), 1+i%2000)
			code, loc, _ := do("PUT", url(tn.name)+"/"+h.String(), tn.id, tn.secret, data)
			if code != 200 {
				t.Fatalf("PUT through %s: %d %s", tn.name, code, loc)
			}
			if code, body, _ := do("GET", url(tn.name)+"/"+loc, tn.id, tn.secret, nil); code != 200 || body != string(data) {
				t.Fatalf("GET through %s: %d", tn.name, code)
			}
			transfers += 2
			if !(tn.stores[0].Has(h.String()) || tn.stores[1].Has(h.String())) || other.stores[0].Has(h.String()) || other.stores[1].Has(h.String()) {
				t.Fatalf("block %s of %s is outside its storage", h, tn.name)
			}
			if i%50 == 0 {
				// The other tenant's key through this name: 403 naming both.
				if code, body, _ := do("HEAD", url(tn.name)+"/"+loc, other.id, other.secret, nil); code != 403 {
					t.Fatalf("%s's key through %s: %d %q", other.name, tn.name, code, body)
				}
				if code, body, _ := do("GET", url(tn.name)+"/"+loc, other.id, other.secret, nil); code != 403 || !strings.Contains(body, "does not serve storage") {
					t.Fatalf("%s's key GET through %s: %d %q", other.name, tn.name, code, body)
				}
				// This tenant's locator through the other name with the other key.
				if code, _, _ := do("GET", url(other.name)+"/"+loc, other.id, other.secret, nil); code == 200 || code == 206 {
					t.Fatalf("a %s locator was read through %s", tn.name, other.name)
				}
			}
		}
	}
	// An unknown name: nginx's default server answers 421 before keepproxy.
	if code, _, _ := do("GET", url("keep.evil.test")+"/"+fmt.Sprintf("%032x", 1), idA, secA, nil); code != 421 {
		t.Fatalf("unknown name through nginx: %d", code)
	}
	// keepproxy's own 421, reached directly with an unknown Host.
	req, _ := http.NewRequest("GET", c.ProxyURL+"/_upload/", nil)
	req.Host = "keep.evil.test"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 421 {
		t.Fatalf("unknown Host straight to keepproxy: %v %v", err, resp)
	}
	// CORS per rule through nginx.
	_, _, h := do("OPTIONS", url("keep.a.test")+"/", "", "", nil, "Origin", "https://upload.a.test", "Access-Control-Request-Method", "PUT")
	_, _, h2 := do("OPTIONS", url("keep.a.test")+"/", "", "", nil, "Origin", "https://upload.b.test", "Access-Control-Request-Method", "PUT")
	if h.Get("Access-Control-Allow-Origin") != "https://upload.a.test" || h2.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("CORS through a's name: own origin %q, other origin %q", h.Get("Access-Control-Allow-Origin"), h2.Get("Access-Control-Allow-Origin"))
	}
}
