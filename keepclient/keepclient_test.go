package keepclient

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/keepgate/keepgate/blockstore"
)

const token = "test-token-123"

// fakeProxy is an in-memory keepproxy whose answers a test can script.
type fakeProxy struct {
	t      *testing.T
	mu     sync.Mutex
	blocks map[string][]byte
	reqs   []*http.Request
	// script, if set, may answer a request itself (return true).
	script func(w http.ResponseWriter, r *http.Request, n int) bool
}

func newFake(t *testing.T) (*fakeProxy, *httptest.Server) {
	f := &fakeProxy{t: t, blocks: map[string][]byte{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeProxy) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.reqs)
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Clone(context.Background()))
	n := len(f.reqs)
	script := f.script
	f.mu.Unlock()
	if script != nil && script(w, r, n) {
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+token {
		http.Error(w, "Missing or invalid Authorization header", http.StatusForbidden)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	switch r.Method {
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		if fmt.Sprintf("%x", md5.Sum(body)) != path {
			http.Error(w, "hash mismatch", http.StatusBadRequest)
			return
		}
		f.mu.Lock()
		f.blocks[path] = body
		f.mu.Unlock()
		w.Header().Set("X-Keep-Replicas-Stored", r.Header.Get("X-Keep-Desired-Replicas"))
		fmt.Fprintf(w, "%s+%d+A%s@%08x", path, len(body), strings.Repeat("a", 40), time.Now().Add(time.Hour).Unix())
	case http.MethodGet, http.MethodHead:
		f.mu.Lock()
		data, ok := f.blocks[path[:32]]
		f.mu.Unlock()
		if !ok {
			http.Error(w, "Block not found", http.StatusNotFound)
			return
		}
		if rh := r.Header.Get("Range"); rh != "" {
			from, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rh, "bytes="), "-"))
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", from, len(data)-1, len(data)))
			w.Header().Set("Content-Length", strconv.Itoa(len(data)-from))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(data[from:])
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet {
			w.Write(data)
		}
	}
}

func client(t *testing.T, url string, mod ...func(*Options)) *Client {
	o := Options{Proxy: url, Token: token, RetryDelay: time.Millisecond, MaxRetryDelay: 5 * time.Millisecond, Retries: 3}
	for _, m := range mod {
		m(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestPutGetHead(t *testing.T) {
	f, srv := newFake(t)
	c := client(t, srv.URL+"/")
	data := bytes.Repeat([]byte("keep"), 10000)
	var sent atomic.Int64
	res, err := c.PutBlock(context.Background(), data, 2, WithProgress(func(n int64) { sent.Add(n) }))
	if err != nil {
		t.Fatal(err)
	}
	h := blockstore.HashOf(data)
	if res.Locator.Hash != h || res.Locator.Size != int64(len(data)) || !res.Locator.Signed() || res.Replicas != 2 {
		t.Fatalf("result %+v", res)
	}
	if sent.Load() != int64(len(data)) {
		t.Fatalf("progress %d", sent.Load())
	}
	put := f.reqs[0]
	if put.URL.Path != "/"+h.String() || put.Header.Get("Authorization") != "Bearer "+token ||
		put.Header.Get("X-Keep-Desired-Replicas") != "2" || !strings.HasPrefix(put.Header.Get("X-Request-Id"), "req-") ||
		put.ContentLength != int64(len(data)) {
		t.Fatalf("PUT request: %s %v %d", put.URL.Path, put.Header, put.ContentLength)
	}
	var out bytes.Buffer
	if err := c.GetBlock(context.Background(), res.Locator, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("GetBlock: %v equal=%v", err, bytes.Equal(out.Bytes(), data))
	}
	if f.reqs[1].URL.Path != "/"+res.Locator.String() {
		t.Fatalf("GET path %s", f.reqs[1].URL.Path)
	}
	buf, err := c.ReadBlock(context.Background(), res.Locator, nil)
	if err != nil || !bytes.Equal(buf, data) {
		t.Fatalf("ReadBlock: %v", err)
	}
	if n, err := c.Head(context.Background(), res.Locator); err != nil || n != int64(len(data)) {
		t.Fatalf("Head: %d %v", n, err)
	}
}

func TestEmptyBlockSkipsNetwork(t *testing.T) {
	f, srv := newFake(t)
	c := client(t, srv.URL)
	res, err := c.PutBlock(context.Background(), nil, 2)
	if err != nil || res.Locator.String() != blockstore.EmptyLocator {
		t.Fatalf("%v %v", res, err)
	}
	var out bytes.Buffer
	if err := c.GetBlock(context.Background(), res.Locator, &out); err != nil || out.Len() != 0 {
		t.Fatal(err)
	}
	if b, err := c.ReadBlock(context.Background(), res.Locator, make([]byte, 10)); err != nil || len(b) != 0 {
		t.Fatal(err)
	}
	if _, err := c.Head(context.Background(), res.Locator); err != nil {
		t.Fatal(err)
	}
	if f.count() != 0 {
		t.Fatalf("%d requests for the empty block", f.count())
	}
}

func TestRetriesTemporaryStatuses(t *testing.T) {
	for _, code := range []int{408, 429, 500, 502, 503, 504} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			f, srv := newFake(t)
			f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
				if n <= 2 {
					io.Copy(io.Discard, r.Body)
					http.Error(w, "try later", code)
					return true
				}
				return false
			}
			c := client(t, srv.URL)
			data := []byte("retry me")
			var sent atomic.Int64
			res, err := c.PutBlock(context.Background(), data, 1, WithProgress(func(n int64) { sent.Add(n) }))
			if err != nil {
				t.Fatal(err)
			}
			if f.count() != 3 || res.Locator.Hash != blockstore.HashOf(data) {
				t.Fatalf("%d requests, %v", f.count(), res)
			}
			ids := map[string]bool{}
			for _, r := range f.reqs {
				ids[r.Header.Get("X-Request-Id")] = true
			}
			if len(ids) != 1 {
				t.Fatalf("X-Request-Id changed across retries: %v", ids)
			}
			if sent.Load() != int64(len(data)) {
				t.Fatalf("progress after retries: %d", sent.Load())
			}
		})
	}
}

func TestPermanentStatuses(t *testing.T) {
	cases := []struct {
		code   int
		hdr    map[string]string
		kind   blockstore.Kind
		substr string
	}{
		{400, nil, blockstore.KindBadRequest, "400: the proxy rejected the request (proxy said: nope)"},
		{401, nil, blockstore.KindNoToken, "set KEEP_TOKEN"},
		{403, nil, blockstore.KindForbidden, "403: the proxy refused the token — check KEEP_TOKEN"},
		{413, nil, blockstore.KindTooLarge, "413: block of 5 bytes refused as too large"},
		{507, nil, blockstore.KindFull, "507: the stores are full"},
		{411, nil, blockstore.KindLengthRequired, "411"},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.code), func(t *testing.T) {
			f, srv := newFake(t)
			f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
				io.Copy(io.Discard, r.Body)
				http.Error(w, "nope", tc.code)
				return true
			}
			_, err := client(t, srv.URL).PutBlock(context.Background(), []byte("hello"), 2)
			if err == nil || f.count() != 1 {
				t.Fatalf("%v after %d requests", err, f.count())
			}
			if blockstore.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.substr) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q (kind %v)", err, blockstore.KindOf(err))
			}
		})
	}
}

func TestReplicaShortfall(t *testing.T) {
	f, srv := newFake(t)
	f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Keep-Replicas-Stored", "1")
		http.Error(w, "wanted 3 replicas, stored 1", http.StatusServiceUnavailable)
		return true
	}
	_, err := client(t, srv.URL).PutBlock(context.Background(), []byte("x"), 3)
	if err == nil || !strings.Contains(err.Error(), "503: only 1 of 3 replicas could be stored") || !strings.Contains(err.Error(), "gave up after 4 attempts") {
		t.Fatalf("%v", err)
	}
	if f.count() != 4 {
		t.Fatalf("%d attempts, want 1 + 3 retries", f.count())
	}
}

func TestGetStatuses(t *testing.T) {
	h := blockstore.HashOf([]byte("abc"))
	past := blockstore.Locator{Hash: h, Size: 3, Hints: []string{"A" + strings.Repeat("1", 40) + "@" + fmt.Sprintf("%08x", time.Now().Add(-time.Hour).Unix())}}
	future := blockstore.Locator{Hash: h, Size: 3, Hints: []string{"A" + strings.Repeat("1", 40) + "@" + fmt.Sprintf("%08x", time.Now().Add(time.Hour).Unix())}}
	cases := []struct {
		name   string
		code   int
		loc    blockstore.Locator
		kind   blockstore.Kind
		substr string
	}{
		{"expired", 422, past, blockstore.KindExpiredSignature, "422: expired signature (the locator's signature expired"},
		{"refused", 422, future, blockstore.KindUnprocessable, "get a fresh locator with this token"},
		{"missing", 404, future, blockstore.KindNotFound, "404: block " + h.String() + "+3 not found"},
		{"forbidden", 403, future, blockstore.KindForbidden, "check KEEP_TOKEN"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f, srv := newFake(t)
			f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
				http.Error(w, "no", tc.code)
				return true
			}
			c := client(t, srv.URL)
			err := c.GetBlock(context.Background(), tc.loc, io.Discard)
			if blockstore.KindOf(err) != tc.kind || !strings.Contains(err.Error(), tc.substr) {
				t.Fatalf("GetBlock: %q (%v)", err, blockstore.KindOf(err))
			}
			if _, err := c.Head(context.Background(), tc.loc); blockstore.KindOf(err) != tc.kind {
				t.Fatalf("Head: %v", err)
			}
			if f.count() != 2 {
				t.Fatalf("%d requests: a permanent error was retried", f.count())
			}
		})
	}
}

func TestCorruptBlock(t *testing.T) {
	f, srv := newFake(t)
	data := bytes.Repeat([]byte{7}, 100000)
	h := blockstore.HashOf(data)
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 0xff
	f.blocks[h.String()] = bad
	loc := blockstore.Locator{Hash: h, Size: int64(len(data))}
	c := client(t, srv.URL)

	// Streaming: the final write is withheld, the error says corrupt, and
	// it is not retried (bytes were already handed on).
	var out bytes.Buffer
	err := c.GetBlock(context.Background(), loc, &out)
	if !blockstore.Is(err, blockstore.KindCorrupt) || !strings.Contains(err.Error(), "do not match the block's MD5") {
		t.Fatalf("GetBlock: %v", err)
	}
	if out.Len() >= len(data) {
		t.Fatalf("GetBlock handed on all %d bytes of a corrupt block", out.Len())
	}
	// Buffered: retried, then fails; nothing returned.
	n0 := f.count()
	var got atomic.Int64
	b, err := c.ReadBlock(context.Background(), loc, nil, WithProgress(func(n int64) { got.Add(n) }))
	if b != nil || !blockstore.Is(err, blockstore.KindCorrupt) || f.count()-n0 != 4 {
		t.Fatalf("ReadBlock: %v after %d requests", err, f.count()-n0)
	}
	// A replica that comes back good on a retry is accepted.
	n0 = f.count()
	f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n == n0+2 {
			f.mu.Lock()
			f.blocks[h.String()] = data
			f.mu.Unlock()
		}
		return false
	}
	got.Store(0)
	b, err = c.ReadBlock(context.Background(), loc, nil, WithProgress(func(n int64) { got.Add(n) }))
	if err != nil || !bytes.Equal(b, data) || got.Load() != int64(len(data)) {
		t.Fatalf("ReadBlock after repair: %v, progress %d", err, got.Load())
	}
}

// A connection cut mid-body is resumed with a Range request.
func TestGetResumesWithRange(t *testing.T) {
	f, srv := newFake(t)
	data := bytes.Repeat([]byte("0123456789"), 50000)
	h := blockstore.HashOf(data)
	f.blocks[h.String()] = data
	f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
		if n%2 == 1 { // first attempt of each call: half the body, then a cut
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.WriteHeader(200)
			w.Write(data[:len(data)/2])
			w.(http.Flusher).Flush()
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return true
		}
		return false
	}
	c := client(t, srv.URL)
	loc := blockstore.Locator{Hash: h, Size: int64(len(data))}
	var out bytes.Buffer
	if err := c.GetBlock(context.Background(), loc, &out); err != nil || !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("GetBlock: %v", err)
	}
	if rg := f.reqs[1].Header.Get("Range"); !strings.HasPrefix(rg, "bytes=") || rg == "bytes=0-" {
		t.Fatalf("second attempt Range %q", rg)
	}
	var got atomic.Int64
	b, err := c.ReadBlock(context.Background(), loc, nil, WithProgress(func(n int64) { got.Add(n) }))
	if err != nil || !bytes.Equal(b, data) || got.Load() != int64(len(data)) {
		t.Fatalf("ReadBlock: %v progress %d", err, got.Load())
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	var retries atomic.Int32
	c := client(t, "http://"+addr, func(o *Options) {
		o.Retries = 2
		o.OnRetry = func(string, error, time.Duration) { retries.Add(1) }
	})
	_, err = c.PutBlock(context.Background(), []byte("x"), 1)
	if err == nil || !strings.Contains(err.Error(), "proxy unreachable at http://"+addr) || retries.Load() != 2 {
		t.Fatalf("%v (%d retries)", err, retries.Load())
	}
}

func TestAttemptTimeout(t *testing.T) {
	f, srv := newFake(t)
	f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		return true
	}
	c := client(t, srv.URL, func(o *Options) { o.Retries = -1; o.AttemptTimeout = 50 * time.Millisecond })
	_, err := c.Head(context.Background(), blockstore.Locator{Hash: blockstore.HashOf([]byte("x")), Size: 1})
	if !blockstore.Is(err, blockstore.KindTimeout) || !strings.Contains(err.Error(), "no answer from the proxy") {
		t.Fatalf("%v", err)
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	f, srv := newFake(t)
	f.script = func(w http.ResponseWriter, r *http.Request, n int) bool {
		io.Copy(io.Discard, r.Body)
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return true
	}
	c := client(t, srv.URL, func(o *Options) { o.RetryDelay = time.Hour; o.MaxRetryDelay = time.Hour })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.PutBlock(ctx, []byte("x"), 1)
	if err == nil || time.Since(start) > 5*time.Second || blockstore.KindOf(err) != blockstore.KindTimeout {
		t.Fatalf("%v after %v", err, time.Since(start))
	}
}

func TestRetryAfterIsHonouredWithinCeiling(t *testing.T) {
	hint := 10 * time.Second
	b := &hintBackOff{exp: nil, hint: &hint, max: 2 * time.Second}
	b.exp = newTestExp()
	if d := b.NextBackOff(); d != 2*time.Second {
		t.Fatalf("%v", d)
	}
	hint = 0
	if d := b.NextBackOff(); d > 2*time.Second || d <= 0 {
		t.Fatalf("%v", d)
	}
}

func TestTLS(t *testing.T) {
	f := &fakeProxy{t: t, blocks: map[string][]byte{}}
	srv := httptest.NewTLSServer(f)
	defer srv.Close()
	c := client(t, srv.URL)
	_, err := c.PutBlock(context.Background(), []byte("x"), 1)
	if err == nil || !strings.Contains(err.Error(), "TLS certificate of "+srv.URL+" is not trusted") || !strings.Contains(err.Error(), "--insecure") {
		t.Fatalf("%v", err)
	}
	if f.count() != 0 {
		t.Fatal("request reached the server")
	}
	c = client(t, srv.URL, func(o *Options) { o.Insecure = true })
	if _, err := c.PutBlock(context.Background(), []byte("x"), 1); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidates(t *testing.T) {
	for _, o := range []Options{
		{Proxy: "", Token: token},
		{Proxy: "ftp://x", Token: token},
		{Proxy: "http://x?a=b", Token: token},
		{Proxy: "http://x", Token: ""},
		{Proxy: "http://x", Token: "two words"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := New(Options{Proxy: "http://x", Token: ""}); !strings.Contains(err.Error(), "KEEP_TOKEN") {
		t.Errorf("%v", err)
	}
}

func TestOversizeRefusedLocally(t *testing.T) {
	_, srv := newFake(t)
	_, err := client(t, srv.URL).PutReader(context.Background(), blockstore.EmptyHash, blockstore.MaxBlockSize+1, bytes.NewReader(nil), 1)
	if !blockstore.Is(err, blockstore.KindTooLarge) {
		t.Fatal(err)
	}
}

func TestSignatureExpiry(t *testing.T) {
	l, _ := blockstore.ParseLocator(blockstore.EmptyLocator + "+A" + strings.Repeat("f", 40) + "@6553f100")
	exp, ok := SignatureExpiry(l)
	if !ok || exp.Unix() != 0x6553f100 {
		t.Fatal(exp, ok)
	}
	if _, ok := SignatureExpiry(blockstore.Locator{}); ok {
		t.Fatal("unsigned locator has an expiry")
	}
}

func newTestExp() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{InitialInterval: time.Millisecond, Multiplier: 2, RandomizationFactor: 0.5, MaxInterval: time.Second}
}
