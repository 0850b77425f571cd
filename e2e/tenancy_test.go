package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

const tenancyAdminToken = "e2e-admin-api-token-0123456789"

type tenantCluster struct {
	*testenv.Cluster
	adminURL string
}

// startTenants: keepproxy with four keepstores in two storages (stores 0-1
// tenant-a, 2-3 tenant-b), SQLite state and the admin API.
func startTenants(t testing.TB, extra ...string) *tenantCluster {
	dir := t.TempDir()
	pepper := testenv.WriteSecret(t, dir, "pepper", "e2e-pepper-0123456789abcdef")
	adminTok := testenv.WriteSecret(t, dir, "admin.token", tenancyAdminToken)
	adminAddr := testenv.FreeAddr(t)
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 4, ProxyExtraFunc: func(s []*testenv.Store) string {
		return fmt.Sprintf(`storages:
  tenant-a: {stores: [%s, %s], max_replicas: 2}
  tenant-b: {stores: [%s, %s], classes: [default]}
default_storage: tenant-a
state: {path: %s/state/keepgate.db, pepper_file: %s}
admin: {listen: %s, token_file: %s}
%s`, s[0].URL, s[1].URL, s[2].URL, s[3].URL, dir, pepper, adminAddr, adminTok, strings.Join(extra, ""))
	}})
	return &tenantCluster{Cluster: c, adminURL: "http://" + adminAddr}
}

// createKey makes an access key over the admin API; id and secret.
func (c *tenantCluster) createKey(t testing.TB, body string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", c.adminURL+"/access_keys", strings.NewReader(body))
	req.SetBasicAuth("admin", tenancyAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var k struct{ ID, Secret string }
	b, _ := io.ReadAll(resp.Body)
	if json.Unmarshal(b, &k); resp.StatusCode != 201 || k.Secret == "" {
		t.Fatalf("create key: %d %s", resp.StatusCode, b)
	}
	return k.ID, k.Secret
}

func (c *tenantCluster) admin(t *testing.T, method, path string) int {
	req, _ := http.NewRequest(method, c.adminURL+path, nil)
	req.SetBasicAuth("admin", tenancyAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// keyReq sends a request with an access key, as Bearer v2/ID/SECRET or as
// Basic ID:SECRET (curl -u).
func keyReq(t *testing.T, method, url, id, secret string, basic bool, body []byte) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, r)
	if basic {
		req.SetBasicAuth(id, secret)
	} else {
		req.Header.Set("Authorization", "Bearer v2/"+id+"/"+secret)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// Two storages, 200 random blocks each: every block lands only on its
// storage's stores, and no key reads, HEADs or lists the other storage's
// blocks; revocation counts from the very next request; keys survive a
// restart of keepproxy.
func TestTenancyIsolationAndRevocation(t *testing.T) {
	c := startTenants(t)
	idA, secA := c.createKey(t, `{"id":"lab-a","storage":{"name":"tenant-a"}}`)
	idB, secB := c.createKey(t, `{"storage":{"name":"tenant-b"},"description":"lab B"}`)

	type stored struct{ hash, loc string }
	var blocksA, blocksB []stored
	for i := 0; i < 200; i++ {
		for _, tc := range []struct {
			id, secret string
			basic      bool
			out        *[]stored
			seed       uint64
		}{{idA, secA, false, &blocksA, uint64(20000 + i)}, {idB, secB, true, &blocksB, uint64(30000 + i)}} {
			data, h := volumetest.Block(tc.seed, 1+int(tc.seed%3000))
			resp, loc := keyReq(t, "PUT", c.ProxyURL+"/"+h.String(), tc.id, tc.secret, tc.basic, data)
			if resp.StatusCode != 200 || !signedRe.MatchString(loc) {
				t.Fatalf("PUT with key %s: %d %q", tc.id, resp.StatusCode, loc)
			}
			*tc.out = append(*tc.out, stored{h.String(), loc})
		}
	}
	for _, b := range blocksA {
		if !(c.Stores[0].Has(b.hash) || c.Stores[1].Has(b.hash)) || c.Stores[2].Has(b.hash) || c.Stores[3].Has(b.hash) {
			t.Fatalf("tenant-a block %s is outside tenant-a's stores", b.hash)
		}
	}
	for _, b := range blocksB {
		if c.Stores[0].Has(b.hash) || c.Stores[1].Has(b.hash) || !(c.Stores[2].Has(b.hash) || c.Stores[3].Has(b.hash)) {
			t.Fatalf("tenant-b block %s is outside tenant-b's stores", b.hash)
		}
	}
	cross := 0
	for i := range blocksA {
		for _, tc := range []struct {
			id, secret string
			own, other stored
		}{{idA, secA, blocksA[i], blocksB[i]}, {idB, secB, blocksB[i], blocksA[i]}} {
			if resp, _ := keyReq(t, "GET", c.ProxyURL+"/"+tc.own.loc, tc.id, tc.secret, false, nil); resp.StatusCode != 200 {
				t.Fatalf("key %s GET of its own block: %d", tc.id, resp.StatusCode)
			}
			for _, m := range []string{"GET", "HEAD"} {
				resp, body := keyReq(t, m, c.ProxyURL+"/"+tc.other.loc, tc.id, tc.secret, false, nil)
				if resp.StatusCode == 200 || resp.StatusCode == 206 || (m == "GET" && len(body) > 0 && resp.StatusCode < 400) {
					cross++
				}
				// 422 (the stores refuse the signature: it was made for
				// the other key), 404 or 403: refused, and no byte.
				if resp.StatusCode != 403 && resp.StatusCode != 404 && resp.StatusCode != 422 {
					t.Fatalf("key %s %s of the other storage's block: %d %q", tc.id, m, resp.StatusCode, body)
				}
			}
		}
	}
	if cross != 0 {
		t.Fatalf("%d cross-storage reads succeeded", cross)
	}
	for _, k := range [][2]string{{idA, secA}, {idB, secB}} {
		if resp, body := keyReq(t, "GET", c.ProxyURL+"/index", k[0], k[1], false, nil); resp.StatusCode != 403 || !strings.Contains(body, "may not admin") {
			t.Fatalf("index with an access key: %d %q", resp.StatusCode, body)
		}
	}

	// Classes and replicas follow the storage.
	data, h := volumetest.Block(99, 100)
	resp, body := keyReq(t, "PUT", c.ProxyURL+"/"+h.String(), idB, secB, false, data)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode, body)
	}
	req, _ := http.NewRequest("PUT", c.ProxyURL+"/"+h.String(), bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer v2/"+idB+"/"+secB)
	req.Header.Set("X-Keep-Storage-Classes", "archive")
	r2, _ := http.DefaultClient.Do(req)
	b2, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 400 || !strings.Contains(string(b2), `storage class "archive" is not offered by storage tenant-b; use one of: default`) {
		t.Fatalf("class outside the storage: %d %s", r2.StatusCode, b2)
	}
	req, _ = http.NewRequest("PUT", c.ProxyURL+"/"+h.String(), bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer v2/"+idA+"/"+secA)
	req.Header.Set("X-Keep-Desired-Replicas", "3")
	r3, _ := http.DefaultClient.Do(req)
	r3.Body.Close()
	if r3.StatusCode != 200 || r3.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("replicas above the storage's maximum: %d stored %q", r3.StatusCode, r3.Header.Get("X-Keep-Replicas-Stored"))
	}

	// A wrong secret and an unknown id look the same; Basic without a colon too.
	_, wrong := keyReq(t, "HEAD", c.ProxyURL+"/"+blocksA[0].loc, idA, strings.Repeat("x", 50), false, nil)
	_, unknown := keyReq(t, "HEAD", c.ProxyURL+"/"+blocksA[0].loc, "nobody-here", strings.Repeat("x", 50), false, nil)
	respW, bodyW := keyReq(t, "GET", c.ProxyURL+"/"+blocksA[0].loc, idA, strings.Repeat("x", 50), false, nil)
	respU, bodyU := keyReq(t, "GET", c.ProxyURL+"/"+blocksA[0].loc, "nobody-here", strings.Repeat("x", 50), false, nil)
	if respW.StatusCode != 403 || respU.StatusCode != 403 || bodyW != bodyU || wrong != unknown {
		t.Fatalf("wrong secret %d %q vs unknown id %d %q", respW.StatusCode, bodyW, respU.StatusCode, bodyU)
	}
	rq, _ := http.NewRequest("GET", c.ProxyURL+"/"+blocksA[0].loc, nil)
	rq.Header.Set("Authorization", "Basic bm8tY29sb24=") // "no-colon"
	if r, _ := http.DefaultClient.Do(rq); r.StatusCode != 403 {
		t.Fatalf("Basic without a colon: %d", r.StatusCode)
	}

	// A key with activity_event_logging off stays out of the audit log
	// (the default stdout sink); the others are in it.
	idQ, secQ := c.createKey(t, `{"id":"quiet-key","storage":{"name":"tenant-a"},"configuration":{"server":{"activity_event_logging":false}}}`)
	dq, hq := volumetest.Block(97, 700)
	if resp, _ := keyReq(t, "PUT", c.ProxyURL+"/"+hq.String(), idQ, secQ, false, dq); resp.StatusCode != 200 {
		t.Fatalf("quiet key PUT: %d", resp.StatusCode)
	}
	if out := c.Proxy.Output(); strings.Contains(out, `"principal_id":"quiet-key"`) || !strings.Contains(out, `"principal_id":"lab-a"`) {
		t.Fatal("activity_event_logging: false did not keep the key out of the audit log (or lab-a is missing from it)")
	}

	// Locators are signed for the key's uid, not its secret: after a
	// rotation (no overlap) the old locators work with the new secret, and
	// the old secret is refused.
	req, _ = http.NewRequest("POST", c.adminURL+"/access_keys/"+idB+"/secret", strings.NewReader(`{"overlap":"0s"}`))
	req.SetBasicAuth("admin", tenancyAdminToken)
	rr, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rot struct{ Secret string }
	json.NewDecoder(rr.Body).Decode(&rot)
	rr.Body.Close()
	if resp, _ := keyReq(t, "GET", c.ProxyURL+"/"+blocksB[5].loc, idB, rot.Secret, false, nil); resp.StatusCode != 200 || rot.Secret == "" {
		t.Fatalf("an old locator with the rotated secret: %d", resp.StatusCode)
	}
	if resp, _ := keyReq(t, "GET", c.ProxyURL+"/"+blocksB[5].loc, idB, secB, false, nil); resp.StatusCode != 403 {
		t.Fatalf("the secret before the rotation: %d", resp.StatusCode)
	}
	secB = rot.Secret

	// Revocation: the very next request is refused, saying why.
	if code := c.admin(t, "DELETE", "/access_keys/"+idA); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if resp, body := keyReq(t, "GET", c.ProxyURL+"/"+blocksA[1].loc, idA, secA, false, nil); resp.StatusCode != 403 || !strings.Contains(body, "access key lab-a was revoked") {
		t.Fatalf("GET right after revocation: %d %q", resp.StatusCode, body)
	}

	// Keys survive a restart of keepproxy.
	c.Proxy.Kill()
	c.StartProxy()
	if resp, _ := keyReq(t, "GET", c.ProxyURL+"/"+blocksB[0].loc, idB, secB, true, nil); resp.StatusCode != 200 {
		t.Fatalf("key B after a restart: %d", resp.StatusCode)
	}
	if resp, _ := keyReq(t, "GET", c.ProxyURL+"/"+blocksA[0].loc, idA, secA, false, nil); resp.StatusCode != 403 {
		t.Fatalf("revoked key A after a restart: %d", resp.StatusCode)
	}
	// Token-file principals use the default storage (tenant-a).
	data, h = volumetest.Block(98, 5000)
	resp, loc := put(t, c.Cluster, data, 2)
	if resp.StatusCode != 200 || !c.Stores[0].Has(h.String()) || !c.Stores[1].Has(h.String()) || c.Stores[2].Has(h.String()) || c.Stores[3].Has(h.String()) {
		t.Fatalf("token-file PUT: %d, not on exactly tenant-a's stores", resp.StatusCode)
	}
	if resp, _ = request(t, "GET", c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil); resp.StatusCode != 200 {
		t.Fatalf("token-file GET: %d", resp.StatusCode)
	}
}
