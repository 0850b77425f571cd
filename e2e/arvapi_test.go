package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/testenv"
)

// arvCluster: keepproxy with four keepstores in two storages (stores 0-1
// tenant-a, 2-3 tenant-b), SQLite state, the admin API and the Arvados
// API, behind the shipped nginx site (TLS).
type arvCluster struct {
	*tenantCluster
	nginx string // https://127.0.0.1:PORT
	host  string // ARVADOS_API_HOST
}

func startArvCluster(t testing.TB, extra string) *arvCluster {
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
arvados_api: {enabled: true, max_request_size: 1MiB}
%s`, s[0].URL, s[1].URL, s[2].URL, s[3].URL, dir, pepper, adminAddr, adminTok, extra)
	}})
	nginx, _ := testenv.NginxFront(t, c.ProxyAddr)
	return &arvCluster{tenantCluster: &tenantCluster{Cluster: c, adminURL: "http://" + adminAddr}, nginx: nginx, host: strings.TrimPrefix(nginx, "https://")}
}

// keyCreate is createKey for testing.TB.
func (c *arvCluster) keyToken(t testing.TB, body string) string {
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
	return "v2/" + k.ID + "/" + k.Secret
}

// arvTree writes the tree of the issue: empty files, a 64 MiB + 1 byte
// file, unicode names (and names that need escaping), 1,000 small files.
func arvTree(t *testing.T, root string, big bool) {
	write := func(rel string, data []byte) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("empty.txt", nil)
	write("deep/er/empty", nil)
	write("ünïcødé ✓.txt", []byte("grüße, 世界\n"))
	write("日本語/ファイル 名.txt", bytes.Repeat([]byte("データ"), 1000))
	write(`odd/a:b\c	tab.txt`, []byte("colon, backslash, tab"))
	for i := 0; i < 1000; i++ {
		write(fmt.Sprintf("many/%02d/f%04d.txt", i%10, i), bytes.Repeat([]byte{byte('a' + i%26)}, 100+i%900))
	}
	if big {
		writeRandom(t, filepath.Join(root, "big.bin"), 64*mib+1, 64)
	}
}

func wantCalls(t *testing.T, tool string, got []string, want string) {
	t.Helper()
	if strings.Join(got, " ") != want {
		t.Errorf("%s made the calls %v, want %s", tool, got, want)
	}
}

var collUUIDRe = regexp.MustCompile(`^zzzzz-4zz18-[a-z0-9]{15}$`)

// The clients of ARVADOS-API.md, call for call, through nginx TLS with
// access keys as tokens: arv-put, arv-get (by UUID and PDH), arv-ls,
// arv-put --update-collection, the Go SDK, in discovery and env modes;
// another storage's key sees none of it; keep put --name and keep get
// UUID agree with them.
func TestArvadosClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx, keepproxy and four keepstores")
	}
	c := startArvCluster(t, "")
	tokA := c.keyToken(t, `{"id":"lab-a","storage":{"name":"tenant-a"}}`)
	tokA2 := c.keyToken(t, `{"id":"lab-a2","storage":{"name":"tenant-a"}}`)
	tokB := c.keyToken(t, `{"id":"lab-b","storage":{"name":"tenant-b"}}`)
	src := filepath.Join(t.TempDir(), "src")
	arvTree(t, src, true)

	// arv-put dir/ (discovery mode).
	rec, calls := arvPut(t, c.host, tokA, "", src, "tree")
	wantCalls(t, "arv-put", calls, "D C U K P")
	if !collUUIDRe.MatchString(rec.UUID) || rec.Name == nil || *rec.Name != "tree" || rec.CreatedAt == nil {
		t.Fatalf("arv-put record: %+v", rec)
	}
	// arv-get UUID/ dir (discovery mode): byte for byte.
	out := filepath.Join(t.TempDir(), "out")
	got, calls, err := arvGet(t, c.host, tokA, "", rec.UUID+"/", out)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "arv-get", calls, "D C D C G K")
	compareTrees(t, src, out)
	if got.PortableDataHash != rec.PortableDataHash {
		t.Fatalf("arv-get PDH %s, arv-put %s", got.PortableDataHash, rec.PortableDataHash)
	}
	// arv-ls by UUID and by PDH, the second key of the same storage.
	names, calls, err := arvLs(t, c.host, tokA2, "", rec.PortableDataHash)
	if err != nil || len(names) != 1006 || !contains(names, "ünïcødé ✓.txt") || !contains(names, `odd/a:b\c	tab.txt`) {
		t.Fatalf("arv-ls by PDH: %v, %d names", err, len(names))
	}
	wantCalls(t, "arv-ls", calls, "D C G")

	// Env mode (ARVADOS_KEEP_SERVICES=nginx): a small tree, then arv-get PDH/ of it.
	small := filepath.Join(t.TempDir(), "small")
	arvTree(t, small, false)
	recS, calls := arvPut(t, c.host, tokA, c.nginx, small, "small")
	wantCalls(t, "arv-put (env)", calls, "D U P")
	outS := filepath.Join(t.TempDir(), "outS")
	if _, calls, err = arvGet(t, c.host, tokA, c.nginx, recS.PortableDataHash+"/", outS); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "arv-get (env)", calls, "D G")
	compareTrees(t, small, outS)

	// arv-put --update-collection adds a file; the PDH moves on.
	addDir := filepath.Join(t.TempDir(), "add")
	os.MkdirAll(filepath.Join(addDir, "new"), 0o755)
	os.WriteFile(filepath.Join(addDir, "new", "added.txt"), []byte("added later\n"), 0o644)
	upd, calls := arvPutUpdate(t, c.host, tokA, "", recS.UUID, addDir)
	wantCalls(t, "arv-put --update-collection", calls, "D C U G D K G PUT")
	if upd.UUID != recS.UUID || upd.PortableDataHash == recS.PortableDataHash {
		t.Fatalf("update: %+v", upd)
	}
	if names, _, _ := arvLs(t, c.host, tokA, "", recS.UUID); len(names) != 1006 || !contains(names, "new/added.txt") {
		t.Fatalf("after update: %d names", len(names))
	}

	// The Go SDK: MakeKeepClient then RequestAndDecode P G(uuid) G(pdh).
	outG := filepath.Join(t.TempDir(), "outG")
	recG, calls := goSDKFlow(t, c.host, tokA2, "", small, outG, "from go")
	wantCalls(t, "Go SDK", calls, "D C K P G G")
	compareTrees(t, small, outG)
	if recG.PortableDataHash != recS.PortableDataHash && pdh(recG.ManifestText) != recG.PortableDataHash {
		t.Fatalf("Go record %+v", recG)
	}

	// Another storage's key sees none of it, and cannot borrow its locators.
	for _, id := range []string{rec.UUID, rec.PortableDataHash, recS.UUID, recG.UUID} {
		_, _, err := arvGet(t, c.host, tokB, "", id+"/", t.TempDir())
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != 404 {
			t.Fatalf("tenant-b arv-get %s: %v, want 404", id, err)
		}
	}
	cb := newArvClient(t, c.host, tokB, "", false)
	cb.discovery()
	cb.usersCurrent()
	var list struct {
		Items          []any `json:"items"`
		ItemsAvailable int   `json:"items_available"`
	}
	if err := cb.pyCall("L", "GET", "collections", nil, nil, &list); err != nil || list.ItemsAvailable != 0 || len(list.Items) != 0 {
		t.Fatalf("tenant-b list: %v %+v", err, list)
	}
	if _, err := cb.create(got.ManifestText, "stolen"); !isStatus(err, 403) {
		t.Fatalf("tenant-b saving tenant-a's signed manifest: %v, want 403", err)
	}
	cb.keepSetup()
	firstLoc := regexp.MustCompile(`[0-9a-f]{32}\+[1-9][0-9]*\+A[0-9a-f]{40}@[0-9a-f]{8}`).FindString(got.ManifestText)
	loc, err := blockstore.ParseLocator(firstLoc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cb.getBlock(loc); err == nil {
		t.Fatal("tenant-b read a tenant-a block with a locator signed for tenant-a")
	}

	// keep put --name and keep get UUID, through the same API.
	k := newKeepCLI(t, c.nginx, "KEEP_TOKEN="+tokA, "KEEP_INSECURE=1")
	stdout := k.mustRun("put", "--name", "by keep", "--no-cache", small+"/")
	keepUUID := strings.TrimSpace(stdout)
	if !collUUIDRe.MatchString(keepUUID) {
		t.Fatalf("keep put --name printed %q", stdout)
	}
	outK := filepath.Join(t.TempDir(), "outK")
	if _, _, err := arvGet(t, c.host, tokA2, "", keepUUID+"/", outK); err != nil {
		t.Fatal(err)
	}
	compareTrees(t, small, outK)
	outK2 := filepath.Join(t.TempDir(), "outK2")
	k.mustRun("get", rec.UUID, outK2)
	compareTrees(t, src, outK2)
	if _, errOut, code := newKeepCLI(t, c.nginx, "KEEP_TOKEN="+tokB, "KEEP_INSECURE=1").run("get", rec.UUID, t.TempDir()); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("keep get of another storage's collection: %d %s", code, errOut)
	}
}

func isStatus(err error, status int) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == status
}

// Bad input through nginx, answered in Arvados' error shape with the
// statuses the SDKs expect, never a 5xx.
func TestArvadosAPIBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts nginx, keepproxy and four keepstores")
	}
	c := startArvCluster(t, "")
	tokA := c.keyToken(t, `{"id":"lab-a","storage":{"name":"tenant-a"}}`)
	tokRO := c.keyToken(t, `{"id":"lab-ro","storage":{"name":"tenant-a"},"scopes":["read"]}`)
	ca := newArvClient(t, c.host, tokA, "", false)
	ca.discovery()
	ca.usersCurrent()
	ca.keepSetup()
	loc := ca.putBlock([]byte("hello keep\n"))
	unsigned := loc[:strings.Index(loc, "+A")]
	call := func(method, path, token, body string) (int, apiError) {
		req, _ := http.NewRequest(method, c.nginx+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := testenv.InsecureClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e apiError
		b, _ := io.ReadAll(resp.Body)
		json.Unmarshal(b, &e)
		if resp.StatusCode != 200 && (len(e.Errors) == 0 || !regexp.MustCompile(`^\d+\+[0-9a-f]{8}$`).MatchString(e.Token)) {
			t.Errorf("%s %s: %d %q is not Arvados' error shape", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, e
	}
	mk := func(text string) string {
		b, _ := json.Marshal(map[string]string{"manifest_text": text})
		return string(b)
	}
	altered := strings.Replace(loc, "6f09f2b353b6d63069f770b90e2b112c", "00000000000000000000000000000000", 1)
	for _, tc := range []struct {
		name, method, path, token, body string
		status                          int
		text                            string
	}{
		{"no token", "GET", "/arvados/v1/users/current", "", "", 401, "Not logged in"},
		{"bad token", "GET", "/arvados/v1/users/current", "v2/lab-a/" + strings.Repeat("x", 50), "", 401, "Not logged in"},
		{"unimplemented path", "GET", "/arvados/v1/container_requests", tokA, "", 404, "GET /arvados/v1/container_requests"},
		{"unimplemented discovery", "GET", "/discovery/v1/apis/other/v2/rest", tokA, "", 404, "/discovery/v1/apis/other/v2/rest"},
		{"malformed uuid", "GET", "/arvados/v1/collections/zzzzz-4zz18-short", tokA, "", 422, "not a collection UUID"},
		{"unknown uuid", "GET", "/arvados/v1/collections/zzzzz-4zz18-000000000000000", tokA, "", 404, "not found"},
		{"unknown pdh", "GET", "/arvados/v1/collections/00000000000000000000000000000000%2B12", tokA, "", 404, "not found"},
		{"unsigned locator", "POST", "/arvados/v1/collections", tokA, mk(". " + unsigned + " 0:11:f\n"), 403, "not signed"},
		{"altered locator", "POST", "/arvados/v1/collections", tokA, mk(". " + altered + " 0:11:f\n"), 403, "not valid"},
		{"malformed manifest", "POST", "/arvados/v1/collections", tokA, mk(". " + loc + " 0:12:f\n"), 422, "outside"},
		{"oversized manifest", "POST", "/arvados/v1/collections", tokA, mk(". " + loc + strings.Repeat(" 0:11:f", 200000) + "\n"), 413, "over the limit"},
		{"read-only key", "POST", "/arvados/v1/collections", tokRO, mk(""), 403, "may not write"},
	} {
		status, e := call(tc.method, tc.path, tc.token, tc.body)
		if status != tc.status || !strings.Contains(strings.Join(e.Errors, "; "), tc.text) {
			t.Errorf("%s: %d %v, want %d mentioning %q", tc.name, status, e.Errors, tc.status, tc.text)
		}
	}
	// A locator signed for the caller whose block is no longer in its
	// storage (removed from both of tenant-a's stores): 422.
	gone := ca.putBlock([]byte("soon gone\n"))
	for _, st := range c.Stores[:2] {
		os.Remove(st.BlockPath(gone[:32]))
	}
	if _, err := ca.create(". "+gone+" 0:10:f\n", "x"); !isStatus(err, 422) || !strings.Contains(err.Error(), "not in this storage") {
		t.Fatalf("a block absent from the caller's storage: %v, want 422", err)
	}
	if !reflect.DeepEqual(ca.calls, []string{"D", "U", "K", "P"}) {
		t.Fatalf("calls %v", ca.calls)
	}
}
