package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/state/sqlite"
)

const adminToken = "admin-token-0123456789abcdef"

type fixture struct {
	url     string
	mu      sync.Mutex
	changed []string
}

func start(t *testing.T) *fixture {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keepgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{}
	api := New(Options{Store: db, Hasher: access.Hasher{Pepper: []byte("pepper")}, Token: adminToken, Cluster: "zzzzz",
		Storage: []string{"tenant-a", "tenant-b"}, Individual: []string{"partner"}, Changed: func(id string) { f.mu.Lock(); f.changed = append(f.changed, id); f.mu.Unlock() }})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fixture) do(t *testing.T, method, path, body string, auth ...string) (int, string, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.url+path, r)
	if len(auth) == 0 {
		req.SetBasicAuth("admin", adminToken)
	} else if auth[0] != "" {
		req.Header.Set("Authorization", auth[0])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestAdminAuth(t *testing.T) {
	f := start(t)
	for _, auth := range []string{"", "Bearer wrong", "Basic " + "YWRtaW46d3Jvbmc="} {
		code, body, h := f.do(t, "GET", "/access_keys", "", auth)
		if code != 401 || h.Get("WWW-Authenticate") != `Basic realm="keepgate-admin"` || !strings.Contains(body, "admin token") {
			t.Errorf("auth %q: %d %q %v", auth, code, body, h)
		}
	}
	if code, _, _ := f.do(t, "GET", "/access_keys", "", "Bearer "+adminToken); code != 200 {
		t.Errorf("Bearer: %d", code)
	}
	req, _ := http.NewRequest("GET", f.url+"/access_keys", nil)
	req.SetBasicAuth("anyone", adminToken)
	if resp, _ := http.DefaultClient.Do(req); resp.StatusCode != 200 {
		t.Errorf("Basic with another user name: %d", resp.StatusCode)
	}
}

func TestAdminKeyLifecycle(t *testing.T) {
	f := start(t)
	code, body, _ := f.do(t, "POST", "/access_keys", `{"storage":{"name":"tenant-a"},"description":"lab A"}`)
	var created map[string]any
	json.Unmarshal([]byte(body), &created)
	id, _ := created["id"].(string)
	secret, _ := created["secret"].(string)
	if code != 201 || len(id) != 27 || !strings.HasPrefix(id, "zzzzz-akey1-") || len(secret) != 50 || created["storage"].(map[string]any)["name"] != "tenant-a" {
		t.Fatalf("create: %d %s", code, body)
	}
	if s := created["scopes"].([]any); len(s) != 2 {
		t.Fatalf("default scopes: %v", s)
	}
	code, body, _ = f.do(t, "POST", "/access_keys", `{"id":"lab-b","secret":"`+strings.Repeat("s", 32)+`","storage":{"name":"tenant-b"},"scopes":["read"],"expires_at":"2099-01-01T00:00:00Z","configuration":{"transfer":{"target_rate_cap_kbps":400000,"max_concurrent_requests":8},"server":{"activity_event_logging":false}}}`)
	if code != 201 || !strings.Contains(body, `"secret": "`+strings.Repeat("s", 32)) || !strings.Contains(body, `"max_concurrent_requests": 8`) || !strings.Contains(body, `"activity_event_logging": false`) {
		t.Fatalf("create with everything: %d %s", code, body)
	}

	code, body, _ = f.do(t, "GET", "/access_keys", "")
	var list []map[string]any
	if json.Unmarshal([]byte(body), &list); code != 200 || len(list) != 2 || strings.Contains(body, "secret") || strings.Contains(body, secret) {
		t.Fatalf("list: %d %s", code, body)
	}
	if _, body, _ = f.do(t, "GET", "/access_keys?storage=tenant-b", ""); !strings.Contains(body, "lab-b") || strings.Contains(body, id) {
		t.Fatalf("list of tenant-b: %s", body)
	}
	if code, body, _ = f.do(t, "GET", "/access_keys/lab-b", ""); code != 200 || strings.Contains(body, "secret") || !strings.Contains(body, `"last_used_at": null`) {
		t.Fatalf("show: %d %s", code, body)
	}
	if code, _, _ = f.do(t, "GET", "/access_keys/nope", ""); code != 404 {
		t.Fatalf("show unknown: %d", code)
	}

	if code, body, _ = f.do(t, "PATCH", "/access_keys/lab-b", `{"scopes":["read","write"],"disabled":true}`); code != 200 || !strings.Contains(body, `"disabled": true`) || !strings.Contains(body, `"write"`) {
		t.Fatalf("patch: %d %s", code, body)
	}
	code, body, _ = f.do(t, "POST", "/access_keys/lab-b/secret", `{"overlap":"24h"}`)
	if code != 200 || !strings.Contains(body, `"previous_secret_expires_at": "`) || strings.Contains(body, strings.Repeat("s", 32)) {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if code, _, _ = f.do(t, "DELETE", "/access_keys/lab-b", ""); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code, _, _ = f.do(t, "DELETE", "/access_keys/lab-b", ""); code != 404 {
		t.Fatalf("revoke again: %d", code)
	}
	if code, body, _ = f.do(t, "GET", "/access_keys/lab-b", ""); code != 200 || !strings.Contains(body, `"revoked_at": "`) {
		t.Fatalf("show revoked: %d %s", code, body)
	}
	if _, body, _ = f.do(t, "GET", "/access_keys", ""); strings.Contains(body, "lab-b") {
		t.Fatal("a revoked key is listed without include_revoked")
	}
	if _, body, _ = f.do(t, "GET", "/access_keys?include_revoked=true", ""); !strings.Contains(body, "lab-b") {
		t.Fatal("include_revoked=true does not list the revoked key")
	}
	if code, _, _ = f.do(t, "POST", "/access_keys", `{"id":"lab-b","storage":{"name":"tenant-a"}}`); code != 409 {
		t.Fatalf("re-creating a revoked id: %d", code)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if strings.Join(f.changed, ",") != id+",lab-b,lab-b,lab-b,lab-b" {
		t.Fatalf("changes announced: %v", f.changed)
	}
}

func TestAdminBadInput(t *testing.T) {
	f := start(t)
	f.do(t, "POST", "/access_keys", `{"id":"taken","storage":{"name":"tenant-a"}}`)
	for _, tc := range []struct {
		body string
		code int
		want string
	}{
		{`{}`, 400, "configured storages: tenant-a, tenant-b"},
		{`{"storage":{"name":"partner"}}`, 400, "access keys cannot be bound to it"},
		{`{"storage":{"name":"tenant-x"}}`, 400, `storage \"tenant-x\" is not configured; configured storages: tenant-a, tenant-b`},
		{`{"id":"a/b","storage":{"name":"tenant-a"}}`, 400, "no '/'"},
		{`{"id":"a b","storage":{"name":"tenant-a"}}`, 400, "access key id"},
		{`{"id":"` + strings.Repeat("a", 64) + `","storage":{"name":"tenant-a"}}`, 400, "3-63 characters"},
		{`{"secret":"short","storage":{"name":"tenant-a"}}`, 400, "32 to 128 characters"},
		{`{"storage":{"name":"tenant-a"},"colour":"red"}`, 400, `unknown JSON member \"colour\"`},
		{`{"storage":{"name":"tenant-a","size":1}}`, 400, `unknown JSON member \"size\"`},
		{`{"storage":{"name":"tenant-a"},"configuration":{"transfer":{"rate":1}}}`, 400, `unknown JSON member \"rate\"`},
		{`{"storage":`, 400, "malformed JSON"},
		{`{"storage":{"name":"tenant-a"}} {}`, 400, "data after the object"},
		{`{"storage":{"name":"tenant-a"},"scopes":[]}`, 400, "list at least one"},
		{`{"storage":{"name":"tenant-a"},"scopes":["admin"]}`, 400, `unknown scope \"admin\"`},
		{`{"storage":{"name":"tenant-a"},"expires_at":"tomorrow"}`, 400, "RFC 3339"},
		{`{"id":"taken","storage":{"name":"tenant-a"}}`, 409, "never reused"},
		{`{"description":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "over 64 KiB"},
	} {
		code, body, _ := f.do(t, "POST", "/access_keys", tc.body)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%.60s: %d %s, want %d %q", tc.body, code, body, tc.code, tc.want)
		}
	}
	if code, body, _ := f.do(t, "PATCH", "/access_keys/taken", `{"scopes":[]}`); code != 400 {
		t.Errorf("patch with empty scopes: %d %s", code, body)
	}
	if code, _, _ := f.do(t, "PATCH", "/access_keys/nope", `{"disabled":true}`); code != 404 {
		t.Errorf("patch unknown: %d", code)
	}
	if code, body, _ := f.do(t, "POST", "/access_keys/taken/secret", `{"overlap":"a while"}`); code != 400 || !strings.Contains(body, "Go duration") {
		t.Errorf("rotate with a bad overlap: %d %s", code, body)
	}
	if _, body, _ := f.do(t, "GET", "/access_keys", ""); strings.Count(body, `"id"`) != 1 {
		t.Errorf("refused creates left keys behind: %s", body)
	}
}
