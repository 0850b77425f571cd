package e2e

// arvClient makes exactly the calls ARVADOS-API.md records for the real
// Arvados clients (arv-put, arv-get, arv-ls, Python KeepClient, Go
// keepclient and RequestAndDecode), in their order, with their
// parameters and body shapes, reading only the fields they read. The real
// clients cannot be installed here; this is their stand-in.

import (
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/manifest"
)

// arvClient is one client process: its settings, and what it learned.
type arvClient struct {
	t       testing.TB
	host    string // ARVADOS_API_HOST
	token   string // ARVADOS_API_TOKEN
	keepEnv string // ARVADOS_KEEP_SERVICES ("": discovery mode)
	goSDK   bool   // Go's conventions (form bodies, literal "+", Go's replica default)
	http    *http.Client
	reqID   string
	calls   []string

	// What D, C, U and K said.
	base       string // rootUrl + servicePath
	uuidPrefix string
	replicas   int
	hasConfigs bool
	classes    []string
	userUUID   string
	keepRoot   string
}

// arvHTTP is ARVADOS_API_HOST_INSECURE=1 against the test nginx; it
// waits for 100 Continue as libcurl does.
var arvHTTP = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	MaxIdleConnsPerHost: 8, ExpectContinueTimeout: time.Second}, Timeout: 5 * time.Minute}

func newArvClient(t testing.TB, host, token, keepEnv string, goSDK bool) *arvClient {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	id := make([]byte, 20)
	for i := range id {
		id[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return &arvClient{t: t, host: host, token: token, keepEnv: keepEnv, goSDK: goSDK, http: arvHTTP, reqID: "req-" + string(id)}
}

// apiError is an error answer in Arvados' shape.
type apiError struct {
	Status int
	Errors []string `json:"errors"`
	Token  string   `json:"error_token"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d: %s (%s)", e.Status, strings.Join(e.Errors, "; "), e.Token)
}

// do sends one API call and decodes a 200 answer into out (any 2xx for
// Python, exactly 200 for Go).
func (c *arvClient) do(letter, method, rawURL string, ctype string, body []byte, out any) error {
	c.calls = append(c.calls, letter)
	req, err := http.NewRequest(method, rawURL, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Request-Id", c.reqID)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ok := resp.StatusCode >= 200 && resp.StatusCode < 300
	if c.goSDK {
		ok = resp.StatusCode == 200
	}
	if !ok {
		e := &apiError{Status: resp.StatusCode}
		if err := json.Unmarshal(b, e); err != nil || len(e.Errors) == 0 {
			c.t.Fatalf("%s %s: %d, not Arvados' error shape: %q", method, rawURL, resp.StatusCode, b)
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %w in %q", method, rawURL, err, b)
	}
	return nil
}

// pyCall is a googleapiclient method call: base from the doc, ?alt=json,
// JSON body.
func (c *arvClient) pyCall(letter, method, path string, query url.Values, body any, out any) error {
	if query == nil {
		query = url.Values{}
	}
	query.Set("alt", "json")
	var b []byte
	ctype := ""
	if body != nil {
		b, _ = json.Marshal(body)
		ctype = "application/json"
	}
	return c.do(letter, method, c.base+path+"?"+query.Encode(), ctype, b, out)
}

// goCall is RequestAndDecode: fixed paths under https://HOST/, form
// content type even on GET, parameters in the query for GET and in a
// form body otherwise (a record as collection=<JSON text>).
func (c *arvClient) goCall(letter, method, path string, params url.Values, out any) error {
	u := "https://" + c.host + "/" + path
	var body []byte
	if method == http.MethodGet && len(params) > 0 {
		u += "?" + params.Encode()
	} else if len(params) > 0 {
		body = []byte(params.Encode())
	}
	return c.do(letter, method, u, "application/x-www-form-urlencoded", body, out)
}

// discovery is D: Python uses rootUrl+servicePath afterwards; both read
// defaultCollectionReplication; Python also uuidPrefix and whether
// configs.get exists.
func (c *arvClient) discovery() {
	var d struct {
		RootURL     string `json:"rootUrl"`
		ServicePath string `json:"servicePath"`
		UUIDPrefix  string `json:"uuidPrefix"`
		Replication any    `json:"defaultCollectionReplication"`
		Resources   map[string]struct {
			Methods map[string]struct {
				Path     string         `json:"path"`
				Response map[string]any `json:"response"`
			} `json:"methods"`
		} `json:"resources"`
		Schemas  map[string]any `json:"schemas"`
		Features []string       `json:"features"`
	}
	if err := c.do("D", "GET", "https://"+c.host+"/discovery/v1/apis/arvados/v1/rest", "", nil, &d); err != nil {
		c.t.Fatalf("discovery: %v", err)
	}
	if d.RootURL == "" || d.ServicePath == "" || d.UUIDPrefix == "" || len(d.Features) > 0 {
		c.t.Fatalf("discovery document unusable: %+v", d)
	}
	for rn, r := range d.Resources {
		for mn, m := range r.Methods {
			if m.Response == nil {
				c.t.Fatalf("%s.%s has no response", rn, mn)
			}
			if ref, ok := m.Response["$ref"].(string); ok && d.Schemas[ref] == nil {
				c.t.Fatalf("%s.%s: $ref %s has no schema", rn, mn, ref)
			}
		}
	}
	for _, need := range [][2]string{{"users", "current"}, {"collections", "get"}, {"collections", "create"}, {"collections", "update"}, {"keep_services", "accessible"}} {
		if _, ok := d.Resources[need[0]].Methods[need[1]]; !ok {
			c.t.Fatalf("discovery document lacks %s.%s", need[0], need[1])
		}
	}
	_, c.hasConfigs = d.Resources["configs"].Methods["get"]
	c.base, c.uuidPrefix = d.RootURL+d.ServicePath, d.UUIDPrefix
	c.replicas = 2
	if n, ok := d.Replication.(float64); ok && n > 0 {
		c.replicas = int(n)
	}
}

// config is C: only StorageClasses, {name: {"Default": bool}}.
func (c *arvClient) config() {
	var cfg struct {
		StorageClasses map[string]struct{ Default bool } `json:"StorageClasses"`
	}
	var err error
	if c.goSDK {
		err = c.goCall("C", "GET", "arvados/v1/config", nil, &cfg)
	} else {
		err = c.pyCall("C", "GET", "config", nil, nil, &cfg)
	}
	if err != nil {
		c.t.Fatalf("config: %v", err)
	}
	c.classes = nil
	for name, sc := range cfg.StorageClasses {
		if sc.Default {
			c.classes = append(c.classes, name)
		}
	}
	sort.Strings(c.classes)
}

// usersCurrent is U: only uuid.
func (c *arvClient) usersCurrent() error {
	var u struct{ UUID string }
	if err := c.pyCall("U", "GET", "users/current", nil, nil, &u); err != nil {
		return err
	}
	c.userUUID = u.UUID
	return nil
}

// keepServices is K: items[] uuid, service_host, service_port,
// service_ssl_flag, service_type, read_only.
func (c *arvClient) keepServices() {
	var l struct {
		Items []struct {
			UUID string `json:"uuid"`
			Host string `json:"service_host"`
			Port int    `json:"service_port"`
			SSL  bool   `json:"service_ssl_flag"`
			Type string `json:"service_type"`
			RO   bool   `json:"read_only"`
		} `json:"items"`
	}
	var err error
	if c.goSDK {
		err = c.goCall("K", "GET", "arvados/v1/keep_services/accessible", nil, &l)
	} else {
		err = c.pyCall("K", "GET", "keep_services/accessible", nil, nil, &l)
	}
	if err != nil {
		c.t.Fatalf("keep_services/accessible: %v", err)
	}
	if len(l.Items) == 0 {
		c.t.Fatal("NoKeepServersError: keep_services/accessible listed none")
	}
	s := l.Items[0]
	if s.Type != "proxy" || s.RO || len(s.UUID) != 27 {
		c.t.Fatalf("keep service %+v: want a writable proxy with a UUID", s)
	}
	scheme := "http"
	if s.SSL {
		scheme = "https"
	}
	c.keepRoot = fmt.Sprintf("%s://%s:%d/", scheme, s.Host, s.Port)
}

// keepSetup is what building a KeepClient does in each mode.
func (c *arvClient) keepSetup() {
	if c.keepEnv != "" {
		c.keepRoot = strings.TrimSuffix(c.keepEnv, "/") + "/"
		return
	}
	c.keepServices()
}

// getCollection is G, by UUID or PDH (Python sends "+" as %2B, Go literally).
func (c *arvClient) getCollection(id string) (collectionRec, error) {
	var rec collectionRec
	var err error
	if c.goSDK {
		err = c.goCall("G", "GET", "arvados/v1/collections/"+id, nil, &rec)
	} else {
		err = c.pyCall("G", "GET", "collections/"+strings.ReplaceAll(id, "+", "%2B"), nil, nil, &rec)
	}
	return rec, err
}

// collectionRec holds the fields the clients read, typed as Go's decoder
// types them (a wrong type fails the decode).
type collectionRec struct {
	UUID                  string         `json:"uuid"`
	Name                  *string        `json:"name"`
	OwnerUUID             string         `json:"owner_uuid"`
	ManifestText          string         `json:"manifest_text"`
	PortableDataHash      string         `json:"portable_data_hash"`
	TrashAt               *time.Time     `json:"trash_at"`
	CreatedAt             *time.Time     `json:"created_at"`
	ModifiedAt            *time.Time     `json:"modified_at"`
	ReplicationDesired    *int           `json:"replication_desired"`
	StorageClassesDesired []string       `json:"storage_classes_desired"`
	Properties            map[string]any `json:"properties"`
}

// create is P, as arv-put sends it (flat JSON, ensure_unique_name) or as
// Go does (collection=<JSON> form).
func (c *arvClient) create(text, name string) (collectionRec, error) {
	var rec collectionRec
	if c.goSDK {
		b, _ := json.Marshal(map[string]any{"manifest_text": text, "name": name})
		err := c.goCall("P", "POST", "arvados/v1/collections", url.Values{"collection": {string(b)}}, &rec)
		return rec, err
	}
	body := map[string]any{"manifest_text": text, "name": name, "replication_desired": nil, "owner_uuid": c.userUUID}
	err := c.pyCall("P", "POST", "collections", url.Values{"ensure_unique_name": {"true"}}, body, &rec)
	if err == nil {
		if rec.UUID == "" || rec.ManifestText == "" && text != "" || rec.PortableDataHash == "" {
			c.t.Fatalf("create answered %+v: arv-put needs uuid, manifest_text, portable_data_hash, name, trash_at", rec)
		}
	}
	return rec, err
}

// update is arv-put --update-collection's PUT: flat JSON with the whole
// signed manifest (and storage_classes_desired when the record had it).
func (c *arvClient) update(uuid, text string, classes []string) (collectionRec, error) {
	var rec collectionRec
	body := map[string]any{"manifest_text": text}
	if classes != nil {
		body["storage_classes_desired"] = classes
	}
	err := c.pyCall("PUT", "PUT", "collections/"+uuid, nil, body, &rec)
	return rec, err
}

// putBlock stores one block through Keep as the SDKs do: PUT /hash with
// the desired replicas and the default classes; the body is the signed
// locator, and X-Keep-Replicas-Stored must reach the replicas asked.
func (c *arvClient) putBlock(data []byte) string {
	h := md5.Sum(data)
	req, _ := http.NewRequest("PUT", c.keepRoot+fmt.Sprintf("%x", h), bytes.NewReader(data))
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Request-Id", c.reqID)
	req.Header.Set("X-Keep-Desired-Replicas", strconv.Itoa(c.replicas))
	if len(c.classes) > 0 {
		req.Header.Set("X-Keep-Storage-Classes", strings.Join(c.classes, ", "))
	}
	if c.goSDK {
		req.Header.Set("Content-Type", "application/octet-stream")
	} else {
		req.Header.Set("Expect", "100-continue")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	stored, _ := strconv.Atoi(resp.Header.Get("X-Keep-Replicas-Stored"))
	if resp.StatusCode != 200 || stored < c.replicas {
		c.t.Fatalf("Keep PUT: %d, %d of %d replicas: %s", resp.StatusCode, stored, c.replicas, b)
	}
	if len(c.classes) > 0 && resp.Header.Get("X-Keep-Storage-Classes-Confirmed") == "" {
		c.t.Fatalf("Keep PUT: classes %v not confirmed", c.classes)
	}
	return strings.TrimSpace(string(b))
}

// getBlock reads one block by its signed locator: Content-Length must be
// the size hint, the bytes must hash to the locator. Go answers the
// empty block itself; Python really asks.
func (c *arvClient) getBlock(loc blockstore.Locator) ([]byte, error) {
	if c.goSDK && loc.Hash == blockstore.EmptyHash {
		return nil, nil
	}
	req, _ := http.NewRequest("GET", c.keepRoot+loc.String(), nil)
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("X-Request-Id", c.reqID)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("Keep GET %s: %d %s", loc.WithoutHints(), resp.StatusCode, b)
	}
	if resp.ContentLength != loc.Size {
		return nil, fmt.Errorf("Keep GET %s: Content-Length %d", loc.WithoutHints(), resp.ContentLength)
	}
	b, err := io.ReadAll(resp.Body)
	if err == nil && blockstore.HashOf(b) != loc.Hash {
		err = fmt.Errorf("Keep GET %s: bytes do not hash to the locator", loc.WithoutHints())
	}
	return b, err
}

// upload is arv-put's data path: files up to 32 MiB packed into shared
// blocks of up to 64 MiB, larger ones cut into 64 MiB blocks, empty files
// in the manifest with no block; it returns the normalised manifest with
// the signed locators Keep answered.
func (c *arvClient) upload(root string) string {
	type src struct {
		rel  string
		size int64
	}
	var files []src
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		files = append(files, src{filepath.ToSlash(rel), fi.Size()})
		return nil
	})
	if err != nil {
		c.t.Fatal(err)
	}
	const block = blockstore.MaxBlockSize
	var out []manifest.File
	var pack []byte
	var packed []int // indexes in out waiting for the shared block
	var packOff []int64
	flush := func() {
		if len(pack) == 0 {
			return
		}
		loc, err := blockstore.ParseLocator(c.putBlock(pack))
		if err != nil {
			c.t.Fatal(err)
		}
		for i, fi := range packed {
			out[fi].Chunks = []manifest.Chunk{{Locator: loc, Offset: packOff[i], Len: out[fi].Size}}
		}
		pack, packed, packOff = nil, nil, nil
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(root, f.rel))
		if err != nil {
			c.t.Fatal(err)
		}
		mf := manifest.File{Path: f.rel, Size: f.size}
		switch {
		case f.size == 0:
		case f.size <= block/2:
			if int64(len(pack))+f.size > block {
				flush()
			}
			packed, packOff = append(packed, len(out)), append(packOff, int64(len(pack)))
			pack = append(pack, data...)
		default:
			for off := int64(0); off < f.size; off += block {
				piece := data[off:min(off+block, f.size)]
				loc, err := blockstore.ParseLocator(c.putBlock(piece))
				if err != nil {
					c.t.Fatal(err)
				}
				mf.Chunks = append(mf.Chunks, manifest.Chunk{Locator: loc, Len: int64(len(piece))})
			}
		}
		out = append(out, mf)
	}
	flush()
	m, err := manifest.FromFiles(out)
	if err != nil {
		c.t.Fatal(err)
	}
	return m.Format()
}

// download is arv-get's data path: every file of the manifest under dest,
// each block fetched once while its files are written.
func (c *arvClient) download(text, dest string) {
	m, err := manifest.Parse(text)
	if err != nil {
		c.t.Fatalf("manifest from the API: %v", err)
	}
	files, err := m.Files()
	if err != nil {
		c.t.Fatal(err)
	}
	cache := map[string][]byte{}
	for _, f := range files {
		p := filepath.Join(dest, filepath.FromSlash(f.Path))
		if f.Dir {
			os.MkdirAll(p, 0o755)
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		var buf bytes.Buffer
		if f.Size == 0 && !c.goSDK {
			if _, err := c.getBlock(blockstore.Locator{Hash: blockstore.EmptyHash, Size: 0}); err != nil {
				c.t.Fatal(err)
			}
		}
		for _, ch := range f.Chunks {
			key := ch.Locator.WithoutHints().String()
			b, ok := cache[key]
			if !ok {
				if b, err = c.getBlock(ch.Locator); err != nil {
					c.t.Fatal(err)
				}
				if len(cache) >= 2 {
					clear(cache)
				}
				cache[key] = b
			}
			buf.Write(b[ch.Offset : ch.Offset+ch.Len])
		}
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			c.t.Fatal(err)
		}
	}
}

// pdh is the client's own portable data hash: every locator cut to
// hash+size, nothing re-sorted.
func pdh(text string) string {
	m, err := manifest.Parse(text)
	if err != nil {
		return "unparsable: " + err.Error()
	}
	return m.PortableDataHash()
}

// ---- the tools, call for call (ARVADOS-API.md §1) ----

// arvPut is `arv-put dir/` (save): D C U K P in discovery mode, D U P in
// env mode; it returns the record.
func arvPut(t testing.TB, host, token, keepEnv, dir, name string) (collectionRec, []string) {
	c := newArvClient(t, host, token, keepEnv, false)
	c.discovery()
	if c.keepEnv == "" && c.hasConfigs {
		c.config()
	}
	if err := c.usersCurrent(); err != nil {
		t.Fatalf("arv-put: users/current: %v", err) // arv-put exits 1 before any Keep I/O
	}
	c.keepSetup()
	text := c.upload(dir)
	rec, err := c.create(text, name)
	if err != nil {
		t.Fatalf("arv-put: create: %v", err)
	}
	if rec.PortableDataHash != pdh(text) {
		t.Fatalf("arv-put --portable-data-hash would warn: server %s, local %s", rec.PortableDataHash, pdh(text))
	}
	return rec, c.calls
}

// arvGet is `arv-get ID/ dest` (ID a UUID or PDH): D C D C G K in
// discovery mode (two clients), D G in env mode.
func arvGet(t testing.TB, host, token, keepEnv, id, dest string) (collectionRec, []string, error) {
	c := newArvClient(t, host, token, keepEnv, false)
	c.discovery()
	if c.keepEnv == "" {
		c.config()
		c.discovery()
		c.config()
	}
	id, _, _ = strings.Cut(id, "/") // arv-get cuts at the first "/"
	rec, err := c.getCollection(id)
	if err != nil {
		return rec, c.calls, err
	}
	if c.uuidPrefix == "" || (strings.Count(id, "-") == 2 && id[:5] != c.uuidPrefix) {
		t.Fatalf("uuidPrefix %q: %s would be treated as remote", c.uuidPrefix, id)
	}
	c.keepSetup()
	c.download(rec.ManifestText, dest)
	return rec, c.calls, nil
}

// arvLs is `arv-ls ID` (and `arv-get ID` printing the manifest): D C G,
// or D G in env mode; it returns the file paths.
func arvLs(t testing.TB, host, token, keepEnv, id string) ([]string, []string, error) {
	c := newArvClient(t, host, token, keepEnv, false)
	c.discovery()
	if c.keepEnv == "" {
		c.config()
	}
	rec, err := c.getCollection(id)
	if err != nil {
		return nil, c.calls, err
	}
	m, err := manifest.Parse(rec.ManifestText)
	if err != nil {
		t.Fatal(err)
	}
	files, _ := m.Files()
	var names []string
	for _, f := range files {
		names = append(names, f.Path)
	}
	return names, c.calls, nil
}

// arvPutUpdate is `arv-put --update-collection UUID dir/`: D C U G D K G
// PUT (discovery) or D U G G PUT (env); the new files are added to the
// collection's manifest.
func arvPutUpdate(t testing.TB, host, token, keepEnv, uuid, dir string) (collectionRec, []string) {
	c := newArvClient(t, host, token, keepEnv, false)
	c.discovery()
	if c.keepEnv == "" {
		c.config()
	}
	if err := c.usersCurrent(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.getCollection(uuid); err != nil {
		t.Fatalf("arv-put --update-collection: %v", err)
	}
	if c.keepEnv == "" {
		c.discovery()
	}
	c.keepSetup()
	rec, err := c.getCollection(uuid)
	if err != nil {
		t.Fatal(err)
	}
	m, err := manifest.Parse(rec.ManifestText)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := m.Files()
	added, _ := manifest.Parse(c.upload(dir))
	more, _ := added.Files()
	merged, err := manifest.FromFiles(append(old, more...))
	if err != nil {
		t.Fatal(err)
	}
	upd, err := c.update(uuid, merged.Format(), rec.StorageClassesDesired)
	if err != nil {
		t.Fatalf("arv-put --update-collection: PUT: %v", err)
	}
	return upd, c.calls
}

// goSDK is Go's MakeKeepClient (D C K, or D C in env mode) and then
// RequestAndDecode: P, G(uuid), G(pdh); it stores dir and reads it back
// into dest from the record fetched by PDH.
func goSDKFlow(t testing.TB, host, token, keepEnv, dir, dest, name string) (collectionRec, []string) {
	c := newArvClient(t, host, token, keepEnv, true)
	c.discovery()
	c.config()
	c.keepSetup()
	text := c.upload(dir)
	rec, err := c.create(text, name)
	if err != nil {
		t.Fatalf("Go create: %v", err)
	}
	byUUID, err := c.getCollection(rec.UUID)
	if err != nil || byUUID.PortableDataHash != rec.PortableDataHash {
		t.Fatalf("Go get by uuid: %v %+v", err, byUUID)
	}
	byPDH, err := c.getCollection(rec.PortableDataHash)
	if err != nil || byPDH.PortableDataHash != rec.PortableDataHash {
		t.Fatalf("Go get by pdh: %v %+v", err, byPDH)
	}
	c.download(byPDH.ManifestText, dest)
	return rec, c.calls
}
