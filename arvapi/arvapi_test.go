package arvapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/state/sqlite"
)

// fakeKeep: tokens name callers; signatures are made for the caller's id;
// blocks are present per storage.
type fakeKeep struct {
	callers map[string]*Caller
	signer  *blockstore.Signer
	present map[string]map[string]bool // storage → hash+size
	down    bool
}

func (k *fakeKeep) Authenticate(r *http.Request) (*Caller, error) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		tok = r.URL.Query().Get("api_token")
	}
	if tok == "" {
		return nil, blockstore.Errorf(blockstore.KindNoToken, "Not logged in")
	}
	c, ok := k.callers[tok]
	if !ok {
		return nil, blockstore.Errorf(blockstore.KindNoToken, "Not logged in: unknown token")
	}
	return c, nil
}

func (k *fakeKeep) Sign(c *Caller, loc blockstore.Locator, notAfter time.Time) blockstore.Locator {
	exp := time.Now().Add(k.signer.TTL)
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter
	}
	return k.signer.SignUntil(loc, c.ID, exp)
}

func (k *fakeKeep) Verify(c *Caller, loc blockstore.Locator) error { return k.signer.Verify(loc, c.ID) }

func (k *fakeKeep) CheckBlock(_ context.Context, c *Caller, loc blockstore.Locator) error {
	if k.down {
		return blockstore.Errorf(blockstore.KindBadGateway, "stores down")
	}
	if k.present[c.Storage][loc.WithoutHints().String()] {
		return nil
	}
	return blockstore.Errorf(blockstore.KindNotFound, "Block not found")
}

type apiEnv struct {
	t    *testing.T
	srv  *httptest.Server
	keep *fakeKeep
}

func newEnv(t *testing.T) *apiEnv {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k := &fakeKeep{signer: &blockstore.Signer{Key: []byte("unit-test-signing-key-0123456789abcdef"), TTL: 336 * time.Hour},
		callers: map[string]*Caller{
			"tok-a":  {Kind: "access-key", ID: "key-a", Storage: "tenant-a", DefaultReplicas: 2, CanRead: true, CanWrite: true},
			"tok-a2": {Kind: "access-key", ID: "key-a2", Storage: "tenant-a", DefaultReplicas: 2, CanRead: true, CanWrite: true},
			"tok-b":  {Kind: "access-key", ID: "key-b", Storage: "tenant-b", Classes: []string{"archive"}, DefaultReplicas: 1, CanRead: true, CanWrite: true},
			"tok-ro": {Kind: "token-file", ID: "ro", Storage: "tenant-a", DefaultReplicas: 2, CanRead: true},
			"tok-wo": {Kind: "token-file", ID: "wo", Storage: "tenant-a", DefaultReplicas: 2, CanWrite: true},
		},
		present: map[string]map[string]bool{"tenant-a": {}, "tenant-b": {}}}
	s, err := New(Options{Keep: k, Collections: db, UUIDPrefix: "zzzzz", MaxRequestSize: 256 << 10,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &apiEnv{t: t, srv: srv, keep: k}
}

// call sends a request and decodes the JSON answer.
func (e *apiEnv) call(method, path, token, ctype, body string) (int, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if method != http.MethodHead {
		if err := json.Unmarshal(b, &v); err != nil {
			e.t.Fatalf("%s %s: %d, not JSON: %q", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, v
}

// put stores a block in a storage and returns its locator signed for id.
func (e *apiEnv) put(storage, id, data string) string {
	loc := blockstore.Locator{Hash: blockstore.HashOf([]byte(data)), Size: int64(len(data))}
	e.keep.present[storage][loc.String()] = true
	return e.keep.signer.Sign(loc, id).String()
}

var errTokenRe = regexp.MustCompile(`^[0-9]+\+[0-9a-f]{8}$`)

func wantError(t *testing.T, what string, code int, v map[string]any, wantCode int, wantText string) {
	t.Helper()
	errs, _ := v["errors"].([]any)
	tok, _ := v["error_token"].(string)
	if code != wantCode || len(errs) != 1 || !errTokenRe.MatchString(tok) || !strings.Contains(fmt.Sprint(errs[0]), wantText) {
		t.Errorf("%s: %d %v, want %d with an error mentioning %q", what, code, v, wantCode, wantText)
	}
}

func TestDiscoveryAndPrincipal(t *testing.T) {
	e := newEnv(t)
	code, d := e.call("GET", "/discovery/v1/apis/arvados/v1/rest", "", "", "")
	host := strings.TrimPrefix(e.srv.URL, "http://")
	if code != 200 || d["rootUrl"] != "https://"+host+"/" || d["servicePath"] != "arvados/v1/" || d["batchPath"] != "batch" ||
		d["uuidPrefix"] != "zzzzz" || d["defaultCollectionReplication"] != 2.0 || d["blobSignatureTtl"] != 1209600.0 || d["features"] != nil {
		t.Fatalf("discovery: %d %v", code, d)
	}
	// Every method has a response, every $ref a schema.
	res := d["resources"].(map[string]any)
	schemas := d["schemas"].(map[string]any)
	for rn, r := range res {
		for mn, m := range r.(map[string]any)["methods"].(map[string]any) {
			mm := m.(map[string]any)
			resp, ok := mm["response"].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: no response", rn, mn)
			}
			if ref, ok := resp["$ref"].(string); ok && schemas[ref] == nil {
				t.Errorf("%s.%s: $ref %s has no schema", rn, mn, ref)
			}
		}
	}
	if _, d := e.call("GET", "/discovery/v1/apis/arvados/v1/rest", "tok-b", "", ""); d["defaultCollectionReplication"] != 1.0 {
		t.Errorf("discovery for a storage of 1 replica: %v", d["defaultCollectionReplication"])
	}
	_, cfg := e.call("GET", "/arvados/v1/config", "tok-b", "", "")
	if sc := cfg["StorageClasses"].(map[string]any); len(sc) != 1 || sc["archive"].(map[string]any)["Default"] != true {
		t.Errorf("config for tenant-b: %v", cfg)
	}
	_, cfg = e.call("GET", "/arvados/v1/config", "", "", "")
	if sc := cfg["StorageClasses"].(map[string]any); sc["default"].(map[string]any)["Default"] != true || cfg["ClusterID"] != "zzzzz" {
		t.Errorf("config without a token: %v", cfg)
	}
	code, u := e.call("GET", "/arvados/v1/users/current", "tok-a", "", "")
	uuid, _ := u["uuid"].(string)
	if code != 200 || !uuidRe.MatchString(uuid) || !strings.HasPrefix(uuid, "zzzzz-tpzed-") || u["is_active"] != true {
		t.Fatalf("users/current: %d %v", code, u)
	}
	if _, u2 := e.call("GET", "/arvados/v1/users/current", "tok-a", "", ""); u2["uuid"] != uuid {
		t.Fatal("user uuid not stable")
	}
	if _, u3 := e.call("GET", "/arvados/v1/users/current", "tok-a2", "", ""); u3["uuid"] == uuid {
		t.Fatal("two principals share a user uuid")
	}
	if code, u := e.call("GET", "/arvados/v1/users/"+uuid, "tok-a", "", ""); code != 200 || u["uuid"] != uuid {
		t.Errorf("users/{uuid}: %d %v", code, u)
	}
	code, a := e.call("GET", "/arvados/v1/api_client_authorizations/current", "tok-a", "", "")
	if code != 200 || a["owner_uuid"] != uuid || !strings.HasPrefix(a["uuid"].(string), "zzzzz-gj3su-") || a["api_token"] != nil {
		t.Errorf("api_client_authorizations/current: %d %v", code, a)
	}
	code, ks := e.call("GET", "/arvados/v1/keep_services/accessible", "tok-a", "", "")
	items, _ := ks["items"].([]any)
	if code != 200 || len(items) != 1 {
		t.Fatalf("keep_services: %d %v", code, ks)
	}
	svc := items[0].(map[string]any)
	if svc["service_type"] != "proxy" || svc["service_host"] != "127.0.0.1" || svc["service_ssl_flag"] != true || svc["read_only"] != false ||
		fmt.Sprint(svc["service_port"]) != host[strings.LastIndex(host, ":")+1:] || !strings.HasPrefix(svc["uuid"].(string), "zzzzz-bi6l4-") {
		t.Errorf("keep service: %v", svc)
	}
	if code, _ := e.call("HEAD", "/arvados/v1/keep_services/accessible", "tok-a", "", ""); code != 200 {
		t.Errorf("HEAD keep_services: %d", code)
	}
	for _, tc := range []struct{ method, path, token string }{
		{"GET", "/arvados/v1/users/current", ""},
		{"GET", "/arvados/v1/users/current", "nope"},
		{"GET", "/arvados/v1/keep_services/accessible", ""},
		{"GET", "/arvados/v1/collections", ""},
	} {
		code, v := e.call(tc.method, tc.path, tc.token, "", "")
		wantError(t, tc.method+" "+tc.path+" without a good token", code, v, 401, "Not logged in")
	}
	code, v := e.call("GET", "/arvados/v1/workflows", "tok-a", "", "")
	wantError(t, "unimplemented path", code, v, 404, "GET /arvados/v1/workflows")
	code, v = e.call("POST", "/arvados/v1/users/current", "tok-a", "", "")
	wantError(t, "wrong method", code, v, 404, "POST /arvados/v1/users/current")
	code, v = e.call("GET", "/arvados/v1/groups/zzzzz-j7d0g-000000000000000", "tok-a", "", "")
	wantError(t, "groups", code, v, 404, "no projects")
}

// The example of ARVADOS-API.md §4.
func TestPortableDataHash(t *testing.T) {
	text := ". acbd18db4cc2f85cedef654fccc4a4d8+3+A" + strings.Repeat("0", 40) + "@70000000 0:3:foo.txt\n"
	st := stripText(text)
	if st != ". acbd18db4cc2f85cedef654fccc4a4d8+3 0:3:foo.txt\n" || pdhOf(st) != "83367e8913dcec0bf3fc25ed5a27eacb+49" {
		t.Fatalf("strip %q pdh %s", st, pdhOf(st))
	}
	if pdhOf(stripText("")) != "d41d8cd98f00b204e9800998ecf8427e+0" {
		t.Fatal("empty manifest")
	}
}

func TestCollectionsLifecycle(t *testing.T) {
	e := newEnv(t)
	_, u := e.call("GET", "/arvados/v1/users/current", "tok-a", "", "")
	me := u["uuid"].(string)
	locFoo := e.put("tenant-a", "key-a", "foo")
	locBar := e.put("tenant-a", "key-a", "barbaz")
	text := ". " + locFoo + " " + locBar + " 0:3:foo.txt 3:3:my\\040bar.txt 6:3:my\\040bar.txt\n./sub d41d8cd98f00b204e9800998ecf8427e+0 0:0:empty\n"
	body, _ := json.Marshal(map[string]any{"manifest_text": text, "name": "x", "replication_desired": nil, "owner_uuid": me})
	code, c := e.call("POST", "/arvados/v1/collections?ensure_unique_name=true&alt=json", "tok-a", "application/json", string(body))
	uuid, _ := c["uuid"].(string)
	wantPDH := pdhOf(stripText(text))
	if code != 200 || !strings.HasPrefix(uuid, "zzzzz-4zz18-") || len(uuid) != 27 || c["portable_data_hash"] != wantPDH || c["name"] != "x" ||
		c["owner_uuid"] != me || c["trash_at"] != nil || c["replication_desired"] != nil || c["file_count"] != 3.0 || c["file_size_total"] != 9.0 {
		t.Fatalf("create: %d %v", code, c)
	}
	if _, ok := c["name"]; !ok {
		t.Fatal("no name key")
	}
	signed := c["manifest_text"].(string)
	if stripText(signed) != stripText(text) || strings.Count(signed, "+A") != 3 {
		t.Fatalf("returned manifest %q", signed)
	}
	// Every locator returned is valid for the caller, not for another key.
	for _, tok := range strings.Fields(signed) {
		if isLocatorToken(tok) {
			loc, _ := blockstore.ParseLocator(tok)
			if e.keep.signer.Verify(loc, "key-a") != nil || e.keep.signer.Verify(loc, "key-a2") == nil {
				t.Fatalf("locator %s not signed for key-a only", tok)
			}
		}
	}
	// Same name again: 422 without ensure_unique_name, renamed with it.
	code, v := e.call("POST", "/arvados/v1/collections", "tok-a", "application/json", string(body))
	wantError(t, "name clash", code, v, 422, "name has already been taken")
	code, c2 := e.call("POST", "/arvados/v1/collections?ensure_unique_name=true", "tok-a", "application/json", string(body))
	if code != 200 || !strings.HasPrefix(c2["name"].(string), "x (") {
		t.Fatalf("ensure_unique_name: %d %v", code, c2)
	}
	// Get by UUID, by PDH as %2B and as +, from a second key of the
	// same storage (signed for it).
	for _, p := range []string{uuid, strings.Replace(wantPDH, "+", "%2B", 1), wantPDH, wantPDH + "+Zhint"} {
		code, g := e.call("GET", "/arvados/v1/collections/"+p, "tok-a2", "application/x-www-form-urlencoded", "")
		if code != 200 || g["portable_data_hash"] != wantPDH || stripText(g["manifest_text"].(string)) != stripText(text) {
			t.Fatalf("GET %s: %d %v", p, code, g)
		}
		for _, tok := range strings.Fields(g["manifest_text"].(string)) {
			if isLocatorToken(tok) {
				loc, _ := blockstore.ParseLocator(tok)
				if e.keep.signer.Verify(loc, "key-a2") != nil {
					t.Fatalf("GET %s: locator %s not signed for key-a2", p, tok)
				}
			}
		}
	}
	// Another storage sees nothing, exactly as if it did not exist.
	for _, p := range [][2]string{{uuid, "zzzzz-4zz18-zzzzzzzzzzzzzzz"}, {wantPDH, "00000000000000000000000000000000+153"}} {
		code, v := e.call("GET", "/arvados/v1/collections/"+p[0], "tok-b", "", "")
		code2, v2 := e.call("GET", "/arvados/v1/collections/"+p[1], "tok-b", "", "")
		wantError(t, "other storage's "+p[0], code, v, 404, "not found")
		if code2 != code || strings.Replace(fmt.Sprint(v["errors"]), p[0], p[1], 1) != fmt.Sprint(v2["errors"]) {
			t.Errorf("other storage's collection %v vs unknown %v", v["errors"], v2["errors"])
		}
	}
	code, v = e.call("PUT", "/arvados/v1/collections/"+uuid, "tok-b", "application/json", `{"name":"mine"}`)
	wantError(t, "update from another storage", code, v, 404, "not found")
	code, v = e.call("DELETE", "/arvados/v1/collections/"+uuid, "tok-b", "", "")
	wantError(t, "delete from another storage", code, v, 404, "not found")
	q := url.Values{"filters": {`[["portable_data_hash","=","` + wantPDH + `"]]`}}
	if code, l := e.call("GET", "/arvados/v1/collections?"+q.Encode(), "tok-b", "", ""); code != 200 || l["items_available"] != 0.0 || len(l["items"].([]any)) != 0 {
		t.Fatalf("list from another storage: %d %v", code, l)
	}
	// List with the filters arv-ls and the SDKs use.
	code, l := e.call("GET", "/arvados/v1/collections?"+q.Encode(), "tok-a", "", "")
	if code != 200 || l["items_available"] != 2.0 || len(l["items"].([]any)) != 2 || l["kind"] != "arvados#collectionList" {
		t.Fatalf("list by pdh: %d %v", code, l)
	}
	q = url.Values{"filters": {`[["name","=","x"],["owner_uuid","=","` + me + `"]]`}, "select": {`["uuid","name"]`}, "count": {"none"}}
	code, l = e.call("GET", "/arvados/v1/collections?"+q.Encode(), "tok-a", "", "")
	if items := l["items"].([]any); code != 200 || len(items) != 1 || items[0].(map[string]any)["uuid"] != uuid || items[0].(map[string]any)["manifest_text"] != nil || l["items_available"] != nil {
		t.Fatalf("list by name and owner, select: %d %v", code, l)
	}
	for _, f := range []string{`[["secret","=","x"]]`, `[["name","~","x"]]`, `nope`, `[["created_at",">","yesterday"]]`} {
		code, v := e.call("GET", "/arvados/v1/collections?"+url.Values{"filters": {f}}.Encode(), "tok-a", "", "")
		wantError(t, "bad filter "+f, code, v, 422, "")
	}
	// Update: rename and a new manifest (Go's form shape, PATCH).
	locNew := e.put("tenant-a", "key-a2", "new")
	form := url.Values{"collection": {`{"name":"renamed","manifest_text":". ` + locNew + ` 0:3:new.txt\n"}`}}
	code, upd := e.call("PATCH", "/arvados/v1/collections/"+uuid, "tok-a2", "application/x-www-form-urlencoded", form.Encode())
	if code != 200 || upd["name"] != "renamed" || upd["file_count"] != 1.0 || upd["version"] != 2.0 || upd["portable_data_hash"] == wantPDH {
		t.Fatalf("PATCH: %d %v", code, upd)
	}
	// arv-put --update-collection: PUT with flat JSON.
	flat, _ := json.Marshal(map[string]any{"manifest_text": text})
	code, upd = e.call("PUT", "/arvados/v1/collections/"+uuid+"?alt=json", "tok-a2", "application/json", string(flat))
	wantError(t, "PUT with a manifest signed for another key", code, upd, 403, "not valid for this token")
	wrapped, _ := json.Marshal(map[string]any{"collection": map[string]any{"manifest_text": text}})
	code, upd = e.call("PUT", "/arvados/v1/collections/"+uuid+"?alt=json", "tok-a", "application/json", string(wrapped))
	if code != 200 || upd["portable_data_hash"] != wantPDH || upd["name"] != "renamed" {
		t.Fatalf("PUT wrapped: %d %v", code, upd)
	}
	// A read-only principal may read but not write.
	if code, _ := e.call("GET", "/arvados/v1/collections/"+uuid, "tok-ro", "", ""); code != 200 {
		t.Fatalf("read-only GET: %d", code)
	}
	code, v = e.call("POST", "/arvados/v1/collections", "tok-ro", "application/json", `{"manifest_text":""}`)
	wantError(t, "read-only create", code, v, 403, "may not write")
	// A write-only principal may say who it is and save, not read.
	if code, _ := e.call("GET", "/arvados/v1/users/current", "tok-wo", "", ""); code != 200 {
		t.Fatalf("write-only users/current: %d", code)
	}
	code, v = e.call("GET", "/arvados/v1/collections/"+uuid, "tok-wo", "", "")
	wantError(t, "write-only GET", code, v, 403, "may not read")
	// limit=0: only the count.
	if code, l := e.call("GET", "/arvados/v1/collections?limit=0", "tok-a", "", ""); code != 200 || len(l["items"].([]any)) != 0 || l["items_available"] != 2.0 || l["limit"] != 0.0 {
		t.Fatalf("limit=0: %d %v", code, l)
	}
	// Delete trashes it: 404 after, found with include_trash, 404 again.
	code, del := e.call("DELETE", "/arvados/v1/collections/"+uuid, "tok-a", "", "")
	if code != 200 || del["is_trashed"] != true || del["trash_at"] == nil {
		t.Fatalf("DELETE: %d %v", code, del)
	}
	code, v = e.call("GET", "/arvados/v1/collections/"+uuid, "tok-a", "", "")
	wantError(t, "GET after delete", code, v, 404, "not found")
	if code, g := e.call("GET", "/arvados/v1/collections/"+uuid+"?include_trash=true", "tok-a", "", ""); code != 200 || g["is_trashed"] != true {
		t.Fatalf("GET include_trash: %d %v", code, g)
	}
	code, v = e.call("DELETE", "/arvados/v1/collections/"+uuid, "tok-a", "", "")
	wantError(t, "second delete", code, v, 404, "not found")
}

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	locA := e.put("tenant-a", "key-a", "foo")
	unsigned := blockstore.Locator{Hash: blockstore.HashOf([]byte("foo")), Size: 3}.String()
	locA2 := e.put("tenant-a", "key-a2", "foo")
	missing := e.keep.signer.Sign(blockstore.Locator{Hash: blockstore.HashOf([]byte("gone")), Size: 4}, "key-a").String()
	mk := func(text string) string {
		b, _ := json.Marshal(map[string]any{"manifest_text": text})
		return string(b)
	}
	for _, tc := range []struct {
		name, body string
		code       int
		text       string
	}{
		{"unsigned locator", mk(". " + unsigned + " 0:3:f\n"), 403, "not signed"},
		{"signed for another key", mk(". " + locA2 + " 0:3:f\n"), 403, "not valid for this token"},
		{"expired signature", mk(". " + e.keep.signer.SignUntil(blockstore.Locator{Hash: blockstore.HashOf([]byte("foo")), Size: 3}, "key-a", time.Now().Add(-time.Hour)).String() + " 0:3:f\n"), 403, "expired"},
		{"block missing from the storage", mk(". " + missing + " 0:4:f\n"), 422, "not in this storage"},
		{"no trailing newline", mk(". " + locA + " 0:3:f"), 422, "newline"},
		{"malformed", mk(". " + locA + " 0:9:f\n"), 422, "outside"},
		{"bad name", mk(". " + locA + " 0:3:../f\n"), 422, "invalid manifest"},
		{"not JSON", "{", 422, "JSON object"},
		{"manifest not a string", `{"manifest_text":3}`, 422, "manifest_text"},
		{"bad trash_at", `{"trash_at":"tomorrow"}`, 422, "trash_at"},
		{"foreign owner", `{"owner_uuid":"zzzzz-tpzed-aaaaaaaaaaaaaaa"}`, 422, "owner_uuid"},
		{"NUL in the name", `{"name":"a\u0000b"}`, 422, "without NUL"},
		{"oversized", mk(". " + locA + " " + strings.Repeat("0:3:f ", 60000) + "0:3:f\n"), 413, "over the limit"},
	} {
		code, v := e.call("POST", "/arvados/v1/collections", "tok-a", "application/json", tc.body)
		wantError(t, tc.name, code, v, tc.code, tc.text)
	}
	code, v := e.call("POST", "/arvados/v1/collections", "tok-b", "application/json", `{"storage_classes_desired":["default"]}`)
	wantError(t, "class outside the storage", code, v, 422, "use one of: archive")
	e.keep.down = true
	code, v = e.call("POST", "/arvados/v1/collections", "tok-a", "application/json", mk(". "+locA+" 0:3:f\n"))
	wantError(t, "stores down", code, v, 502, "stores down")
	for _, tc := range []struct {
		id   string
		code int
	}{{"zzzzz-4zz18-000000000000000", 404}, {"yyyyy-4zz18-000000000000000", 404}, {"zzzzz-tpzed-000000000000000", 422}, {"not-a-uuid", 422}, {"acbd18db4cc2f85cedef654fccc4a4d8+3", 404}, {"acbd18db4cc2f85cedef654fccc4a4d8", 422}} {
		code, v := e.call("GET", "/arvados/v1/collections/"+tc.id, "tok-a", "", "")
		wantError(t, "GET "+tc.id, code, v, tc.code, "")
	}
	code, v = e.call("PUT", "/arvados/v1/collections/acbd18db4cc2f85cedef654fccc4a4d8+3", "tok-a", "application/json", "{}")
	wantError(t, "update by PDH", code, v, 422, "not a collection UUID")
}

// The endpoint the client used: Host's name and port; the scheme from
// X-Forwarded-Proto of a trusted peer only.
func TestExternalEndpoint(t *testing.T) {
	s := &Server{opt: Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}
	for _, tc := range []struct {
		remote, host, proto, root string
		port                      int
	}{
		{"127.0.0.1:5000", "keep.example.org", "https", "https://keep.example.org/", 443},
		{"127.0.0.1:5000", "keep.example.org:8443", "https", "https://keep.example.org:8443/", 8443},
		{"127.0.0.1:5000", "Keep.Example.org.", "http", "http://Keep.Example.org/", 80},
		{"10.1.2.3:5000", "keep.example.org", "https", "http://keep.example.org/", 80}, // untrusted peer: its header is ignored
		{"127.0.0.1:5000", "[::1]:8443", "https", "https://[::1]:8443/", 8443},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr, r.Host = tc.remote, tc.host
		r.Header.Set("X-Forwarded-Proto", tc.proto)
		e := s.external(r)
		if e.root() != tc.root || e.Port != tc.port || strings.Contains(e.Host, "[") {
			t.Errorf("%+v: %+v %s", tc, e, e.root())
		}
	}
}
