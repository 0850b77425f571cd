package gatewayapi

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/placement"
)

type staticAuth map[string]*access.Identity

func (s staticAuth) Authenticate(_ context.Context, token string) (*access.Identity, error) {
	if id, ok := s[token]; ok {
		return id, nil
	}
	return nil, access.ErrBadToken
}

const (
	tokRW    = "rw-token-123456"
	tokRO    = "ro-token-123456"
	tokAdmin = "admin-token-123456"
)

type cluster struct {
	t      *testing.T
	stores []*testStore
	gw     *Server
	srv    *httptest.Server
}

func newCluster(t *testing.T, n int, mod func(*Options)) *cluster {
	c := &cluster{t: t}
	var svcs []placement.Service
	for i := 0; i < n; i++ {
		f := newTestStore(t, fmt.Sprintf("zzzzz-bi6l4-%015d", i))
		c.stores = append(c.stores, f)
		svcs = append(svcs, f.svc)
	}
	opt := Options{
		Options: gateway.Options{
			Services:        svcs,
			Window:          1 << 20,
			UpstreamIdle:    5 * time.Second,
			StoreAdminToken: testStoreAdminToken,
		},
		Auth: staticAuth{
			tokRW:    {Name: "rw", Source: "test", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}},
			tokRO:    {Name: "ro", Scopes: []access.Scope{access.ScopeRead}},
			tokAdmin: {Name: "admin", Scopes: []access.Scope{access.ScopeAdmin}},
		},
	}
	if mod != nil {
		mod(&opt)
	}
	g, err := New(opt)
	if err != nil {
		t.Fatal(err)
	}
	c.gw = g
	c.srv = httptest.NewServer(g.Handler())
	t.Cleanup(c.srv.Close)
	return c
}

// ordered returns the stores in the block's probe order: the rendezvous
// order over the gateway's stores (the router of a cluster without
// storages).
func (c *cluster) ordered(h blockstore.Hash) []*testStore {
	var out []*testStore
	order := placement.NewRendezvousRouter(c.gw.Gateway().Services()).Route(context.Background(), placement.RouteRequest{Hash: h})
	for _, svc := range order {
		for _, f := range c.stores {
			if f.svc.UUID == svc.UUID {
				out = append(out, f)
			}
		}
	}
	return out
}

func (c *cluster) do(method, path, token string, body []byte, hdr map[string]string) *http.Response {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, c.srv.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(b)
}

func TestPutGetReplicas(t *testing.T) {
	c := newCluster(t, 4, nil)
	for replicas := 1; replicas <= 3; replicas++ {
		data, h := volumetest.Block(uint64(replicas), 3<<20+replicas)
		resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": fmt.Sprint(replicas), "X-Keep-Storage-Classes": "default"})
		body := readAll(t, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("replicas=%d: PUT %d %s", replicas, resp.StatusCode, body)
		}
		if got := resp.Header.Get("X-Keep-Replicas-Stored"); got != fmt.Sprint(replicas) {
			t.Fatalf("X-Keep-Replicas-Stored %q, want %d", got, replicas)
		}
		if got := resp.Header.Get("X-Keep-Storage-Classes-Confirmed"); got != fmt.Sprintf("default=%d", replicas) {
			t.Fatalf("Confirmed %q", got)
		}
		if !strings.HasPrefix(body, fmt.Sprintf("%s+%d+A", h, len(data))) || strings.HasSuffix(body, "\n") {
			t.Fatalf("locator body %q", body)
		}
		for i, f := range c.ordered(h) {
			if f.has(h) != (i < replicas) {
				t.Fatalf("replicas=%d: store %d (probe position %d) has=%v", replicas, i, i, f.has(h))
			}
		}
		resp = c.do("GET", "/"+body, tokRO, nil, nil)
		got := readAll(t, resp)
		if resp.StatusCode != 200 || got != string(data) || resp.Header.Get("Content-Length") != fmt.Sprint(len(data)) {
			t.Fatalf("GET: %d, %d bytes", resp.StatusCode, len(got))
		}
		resp = c.do("HEAD", "/"+body, tokRO, nil, nil)
		readAll(t, resp)
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
			t.Fatalf("HEAD: %d len %d", resp.StatusCode, resp.ContentLength)
		}
		resp = c.do("GET", "/"+body, tokRO, nil, map[string]string{"Range": "bytes=100-199"})
		got = readAll(t, resp)
		if resp.StatusCode != 206 || got != string(data[100:200]) || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes 100-199/%d", len(data)) {
			t.Fatalf("Range GET: %d %q", resp.StatusCode, resp.Header.Get("Content-Range"))
		}
	}
}

func TestPutStatuses(t *testing.T) {
	t.Run("stores-verify", func(t *testing.T) { putStatuses(t, newCluster(t, 3, nil)) })
	t.Run("proxy-verifies", func(t *testing.T) {
		putStatuses(t, newCluster(t, 3, func(o *Options) { o.VerifyPuts = true }))
	})
}

func putStatuses(t *testing.T, c *cluster) {
	data, h := volumetest.Block(42, 1000)
	bad := bytes.Clone(data)
	bad[999] ^= 1
	cases := []struct {
		name   string
		method string
		path   string
		token  string
		body   []byte
		hdr    map[string]string
		status int
	}{
		{"no token", "PUT", "/" + h.String(), "", data, nil, 403},
		{"bad token", "PUT", "/" + h.String(), "nope-nope-nope", data, nil, 403},
		{"read-only token", "PUT", "/" + h.String(), tokRO, data, nil, 403},
		{"size hint mismatch", "PUT", "/" + h.String() + "+999", tokRW, data, nil, 400},
		{"invalid locator", "PUT", "/" + strings.ToUpper(h.String()), tokRW, data, nil, 400},
		{"wrong hash", "PUT", "/" + h.String(), tokRW, bad, nil, 400},
		{"loop", "PUT", "/" + h.String(), tokRW, data, map[string]string{"Via": "HTTP/1.1 keepproxy"}, 500},
		{"unknown path", "GET", "/foo/bar", tokRW, nil, nil, 400},
		{"missing block", "GET", "/" + h.String() + "+1000", tokRW, nil, nil, 404},
		{"get no token", "GET", "/" + h.String() + "+1000", "", nil, nil, 403},
		{"index needs admin", "GET", "/index", tokRW, nil, nil, 403},
	}
	for _, tc := range cases {
		resp := c.do(tc.method, tc.path, tc.token, tc.body, tc.hdr)
		body := readAll(t, resp)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d (%q), want %d", tc.name, resp.StatusCode, body, tc.status)
		}
	}
	for _, f := range c.stores {
		if f.has(h) {
			t.Fatal("a refused PUT stored the block")
		}
	}
	// Chunked (no Content-Length) → 411.
	req, _ := http.NewRequest("PUT", c.srv.URL+"/"+h.String(), io.NopCloser(bytes.NewReader(data)))
	req.ContentLength = -1
	req.Header.Set("Authorization", "Bearer "+tokRW)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if readAll(t, resp); resp.StatusCode != 411 {
		t.Errorf("chunked PUT: %d, want 411", resp.StatusCode)
	}
	// Over 64 MiB by Content-Length → 413 without reading the body.
	req, _ = http.NewRequest("PUT", c.srv.URL+"/"+h.String(), io.LimitReader(zeros{}, blockstore.MaxBlockSize+1))
	req.ContentLength = blockstore.MaxBlockSize + 1
	req.Header.Set("Authorization", "Bearer "+tokRW)
	resp, err = http.DefaultClient.Do(req)
	if err == nil {
		if readAll(t, resp); resp.StatusCode != 413 {
			t.Errorf("oversize PUT: %d, want 413", resp.StatusCode)
		}
	}
	// Short body: the client promises more than it sends.
	pr, pw := io.Pipe()
	go func() { pw.Write(data[:500]); pw.CloseWithError(fmt.Errorf("client died")) }()
	req, _ = http.NewRequest("PUT", c.srv.URL+"/"+h.String(), pr)
	req.ContentLength = 1000
	req.Header.Set("Authorization", "Bearer "+tokRW)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		readAll(t, resp)
	}
	time.Sleep(100 * time.Millisecond)
	for _, f := range c.stores {
		if f.has(h) {
			t.Fatal("a short PUT stored the block")
		}
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestPutReplacesFailedStores(t *testing.T) {
	putReplacesFailedStores(t, newCluster(t, 4, nil))
}

func putReplacesFailedStores(t *testing.T, c *cluster) {
	data, h := volumetest.Block(7, 6<<20)
	ord := c.ordered(h)
	ord[0].set(func(f *testStore) { f.refusePut = 503 })       // fails before any data
	ord[1].set(func(f *testStore) { f.dieAfterPut = 3 << 20 }) // dies after the window has passed
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("PUT: %d %s replicas %s", resp.StatusCode, body, resp.Header.Get("X-Keep-Replicas-Stored"))
	}
	if ord[0].has(h) || ord[1].has(h) || !ord[2].has(h) || !ord[3].has(h) {
		t.Fatalf("placement: %v %v %v %v", ord[0].has(h), ord[1].has(h), ord[2].has(h), ord[3].has(h))
	}
}

func TestPutShortfall(t *testing.T) {
	c := newCluster(t, 2, nil)
	data, h := volumetest.Block(8, 1000)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "3"})
	readAll(t, resp)
	if resp.StatusCode != 503 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("shortfall: %d replicas %q", resp.StatusCode, resp.Header.Get("X-Keep-Replicas-Stored"))
	}
}

func TestGetFailoverMidBody(t *testing.T) {
	c := newCluster(t, 3, nil)
	data, h := volumetest.Block(9, 5<<20)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "3"})
	loc := readAll(t, resp)
	ord := c.ordered(h)
	ord[0].set(func(f *testStore) { f.dieAfterGet = 2 << 20 })
	resp = c.do("GET", "/"+loc, tokRW, nil, nil)
	got := readAll(t, resp)
	if resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET after mid-body failure: %d, %d bytes, equal=%v", resp.StatusCode, len(got), got == string(data))
	}
	if ord[1].gets.Load() == 0 {
		t.Fatal("second store was not asked")
	}
	// A store that is down entirely is skipped.
	ord[0].set(func(f *testStore) { f.dieAfterGet = 0; f.down = true })
	resp = c.do("GET", "/"+loc, tokRW, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET with first store down: %d", resp.StatusCode)
	}
}

func TestGetCorruptNeverCleanOK(t *testing.T) {
	c := newCluster(t, 1, nil)
	data, h := volumetest.Block(10, 2<<20)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "1"})
	loc := readAll(t, resp)
	c.stores[0].set(func(f *testStore) { f.corrupt = true })
	resp = c.do("GET", "/"+loc, tokRW, nil, nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && len(got) == len(data) {
		t.Fatal("corrupt block delivered as a clean, complete response")
	}
	if c.gw.metrics.corrupt == nil {
		t.Fatal("no corrupt metric")
	}
}

func TestCORS(t *testing.T) {
	c := newCluster(t, 1, nil)
	resp := c.do("OPTIONS", "/anything", "", nil, map[string]string{"Origin": "https://example.org", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization,x-keep-desired-replicas"})
	body := readAll(t, resp)
	want := map[string]string{
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Allow-Methods":  "GET, HEAD, PUT, OPTIONS, POST",
		"Access-Control-Allow-Headers":  "Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas, X-Keep-Signature, X-Keep-Storage-Classes",
		"Access-Control-Expose-Headers": "X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed",
		"Access-Control-Max-Age":        "86486400",
	}
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("preflight: %d %q", resp.StatusCode, body)
	}
	for k, v := range want {
		if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	data, h := volumetest.Block(11, 10)
	resp = c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"Origin": "https://example.org", "X-Keep-Desired-Replicas": "1"})
	readAll(t, resp)
	if resp.Header.Get("Access-Control-Expose-Headers") != want["Access-Control-Expose-Headers"] || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("PUT CORS headers: %v", resp.Header)
	}
}

func TestPostAndIndex(t *testing.T) {
	c := newCluster(t, 2, nil)
	data := []byte("hello keep\n")
	resp := c.do("POST", "/", tokRW, data, nil)
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "6f09f2b353b6d63069f770b90e2b112c+11+A") {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	resp = c.do("GET", "/index", tokAdmin, nil, nil)
	idx := readAll(t, resp)
	if resp.StatusCode != 200 || strings.Count(idx, "6f09f2b353b6d63069f770b90e2b112c+11 ") != 2 || !strings.HasSuffix(idx, "\n\n") {
		t.Fatalf("index: %d %q", resp.StatusCode, idx)
	}
	resp = c.do("GET", "/index/6f0", tokAdmin, nil, nil)
	if idx := readAll(t, resp); strings.Count(idx, "\n") != 3 {
		t.Fatalf("index prefix: %q", idx)
	}
	resp = c.do("GET", "/index/xyz", tokAdmin, nil, nil)
	if readAll(t, resp); resp.StatusCode != 400 {
		t.Fatalf("index bad prefix: %d", resp.StatusCode)
	}
}

func TestAuthCacheSingleLookup(t *testing.T) {
	var calls atomic.Int32
	slow := authFunc(func(ctx context.Context, tok string) (*access.Identity, error) {
		calls.Add(1)
		time.Sleep(50 * time.Millisecond)
		if tok == "good-token-1" {
			return &access.Identity{Name: "g", Scopes: []access.Scope{access.ScopeRead}}, nil
		}
		return nil, access.ErrBadToken
	})
	c := access.NewCache(slow, 10, time.Minute, 200*time.Millisecond, nil)
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Authenticate(context.Background(), "good-token-1"); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d look-ups for one token, want 1", n)
	}
	for i := 0; i < 3; i++ {
		if _, err := c.Authenticate(context.Background(), "bad-token-1"); !blockstore.Is(err, blockstore.KindForbidden) {
			t.Fatalf("bad token: %v", err)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("negative caching: %d look-ups, want 2", n)
	}
	time.Sleep(250 * time.Millisecond)
	c.Authenticate(context.Background(), "bad-token-1")
	if n := calls.Load(); n != 3 {
		t.Fatalf("negative entry should expire: %d look-ups, want 3", n)
	}
}

type authFunc func(context.Context, string) (*access.Identity, error)

func (f authFunc) Authenticate(ctx context.Context, t string) (*access.Identity, error) {
	return f(ctx, t)
}

func TestUploaderAndIndexAreGzipped(t *testing.T) {
	c := newCluster(t, 1, func(o *Options) { o.UploaderFS = http.Dir("../web/static") })
	req, _ := http.NewRequest("GET", c.srv.URL+"/_upload/uploader.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("uploader.js: %d encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	resp = c.do("GET", "/_upload/", "", nil, nil)
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, "keepgate uploader") {
		t.Fatalf("uploader page: %d", resp.StatusCode)
	}
}
