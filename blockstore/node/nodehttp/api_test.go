package nodehttp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/httpserver"
)

var hello = []byte("hello keep\n") // 6f09f2b353b6d63069f770b90e2b112c

const helloHash = "6f09f2b353b6d63069f770b90e2b112c"

func oneMount(t *testing.T, mods ...func(*envOptions)) (*env, *faultVolume) {
	m, fv, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa"})
	return newEnv(t, []node.Mount{m}, mods...), fv
}

// checkNoCORS: keepstores send no CORS headers (a web page must not be
// able to reach them through a browser on the LAN).
func checkNoCORS(t *testing.T, r resp) {
	t.Helper()
	for k := range r.Header {
		if strings.HasPrefix(k, "Access-Control-") {
			t.Errorf("status %d carries the CORS header %s: %q", r.Code, k, r.Header.Get(k))
		}
	}
}

func TestNoCORSAndBadRequests(t *testing.T) {
	e, _ := oneMount(t)
	// OPTIONS, a CORS preflight included, is an unknown method like any other.
	for _, path := range []string{"/", "/" + helloHash, "/index", "/anything/at/all"} {
		r := e.do("OPTIONS", path, nil, "Origin: https://evil.example", "Access-Control-Request-Method: PUT")
		if r.Code != 400 || r.Body != "Bad Request\n" {
			t.Errorf("OPTIONS %s: %d %q, want 400 Bad Request", path, r.Code, r.Body)
		}
		checkNoCORS(t, r)
	}
	for _, c := range []struct{ method, path string }{
		{"POST", "/"}, {"PROPFIND", "/"}, {"GET", "/"}, {"GET", "/debug.json"}, {"GET", "//index"},
		{"PUT", "//" + helloHash}, {"POST", "/" + helloHash}, {"DELETE", "/index"}, {"GET", "/pull"},
		{"GET", "/" + helloHash[:31]},
	} {
		r := e.do(c.method, c.path, nil)
		if r.Code != 400 || r.Body != "Bad Request\n" {
			t.Errorf("%s %s: %d %q, want 400 Bad Request", c.method, c.path, r.Code, r.Body)
		}
		checkNoCORS(t, r)
	}
	// No kind of response carries CORS headers.
	for _, r := range []resp{e.do("GET", "/"+helloHash+"+11", nil, "Origin: https://evil.example"), e.do("GET", "/index", nil),
		e.do("GET", "/_health/ping", nil, bearer(mgmtTok)), e.do("PUT", "/"+helloHash, bytes.NewReader(hello), "Origin: https://evil.example")} {
		checkNoCORS(t, r)
	}
}

func TestPutGetHeadRoundTrip(t *testing.T) {
	e, _ := oneMount(t)
	r := e.do("PUT", "/"+helloHash, bytes.NewReader(hello), bearer(userToken), "X-Keep-Desired-Replicas: 2")
	e.expect(r, 200, helloHash+"+11+A")
	if !strings.HasSuffix(r.Body, "\n") || strings.Count(r.Body, "\n") != 1 {
		t.Fatalf("PUT body %q: want one line", r.Body)
	}
	if r.Header.Get("X-Keep-Replicas-Stored") != "1" || r.Header.Get("X-Keep-Storage-Classes-Confirmed") != "default=1" {
		t.Fatalf("PUT headers: %v", r.Header)
	}
	loc, _ := blockstore.ParseLocator(strings.TrimSpace(r.Body))
	if err := (&blockstore.Signer{Key: []byte(testKey), TTL: 336 * time.Hour}).Verify(loc, userToken); err != nil {
		t.Fatalf("returned locator does not verify: %v", err)
	}
	signed := strings.TrimSpace(r.Body)
	g := e.do("GET", "/"+signed, nil, bearer(userToken))
	e.expect(g, 200, string(hello))
	if g.Body != string(hello) || g.Header.Get("Content-Length") != "11" || g.Header.Get("Vary") != "X-Keep-Signature" ||
		g.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("GET: %q %v", g.Body, g.Header)
	}
	// A doubled leading slash is tolerated for reads, and api_token works.
	e.expect(e.do("GET", "//"+signed+"?api_token="+userToken, nil), 200, string(hello))
	h := e.do("HEAD", "/"+signed, nil, bearer(userToken))
	if h.Code != 200 || h.Header.Get("Content-Length") != "11" || h.Body != "" {
		t.Fatalf("HEAD: %d %v %q", h.Code, h.Header, h.Body)
	}
	// Without a token the locator comes back unsigned.
	e.expect(e.do("PUT", "/"+helloHash+"+11+Zjunk", bytes.NewReader(hello)), 200, helloHash+"+11\n")
}

func TestUnsignedNode(t *testing.T) {
	e, _ := oneMount(t, func(o *envOptions) { o.Signer, o.RequireSignatures = nil, false })
	e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello), bearer(userToken)), 200, helloHash+"+11\n")
	e.expect(e.do("GET", "/"+helloHash+"+11", nil), 200, string(hello))
	// HEAD needs no size hint, and reports the real size.
	h := e.do("HEAD", "/"+helloHash, nil)
	if h.Code != 200 || h.Header.Get("Content-Length") != "11" {
		t.Fatalf("HEAD without hint: %d %v", h.Code, h.Header)
	}
	e.expect(e.do("GET", "/"+helloHash, nil), 405, "method not allowed")
	e.expect(e.do("GET", "/"+helloHash+"+0", nil), 405, "method not allowed")
	e.expect(e.do("GET", "/"+helloHash+"+12", nil), 404, "")
	e.expect(e.do("HEAD", "/"+helloHash+"+12", nil), 404, "")
	e.expect(e.do("GET", "/0123456789abcdef0123456789abcdef+3", nil), 404, "block 0123456789abcdef0123456789abcdef not found")
	e.expect(e.do("GET", "/"+helloHash+"+11+", nil), 400, "invalid locator")
	e.expect(e.do("GET", "/"+helloHash+"+Abc+11", nil), 400, "invalid locator")
	// The empty block is always there.
	for _, p := range []string{blockstore.EmptyLocator, blockstore.EmptyHash.String()} {
		g := e.do("GET", "/"+p, nil)
		if g.Code != 200 || g.Body != "" || g.Header.Get("Content-Length") != "0" {
			t.Fatalf("GET %s: %d %v", p, g.Code, g.Header)
		}
	}
	// Remote signatures are not configured here.
	e.expect(e.do("GET", "/"+helloHash+"+11+Rzzzzz-"+strings.Repeat("a", 40)+"@70000000", nil), 401, "no token")
	e.expect(e.do("GET", "/"+helloHash+"+11+Rzzzzz-"+strings.Repeat("a", 40)+"@70000000", nil, bearer(userToken)), 400, "remote cluster not configured")
}

func TestSignatureFailures(t *testing.T) {
	e, _ := oneMount(t)
	signed := e.put(hello)
	s := &blockstore.Signer{Key: []byte(testKey), TTL: 336 * time.Hour}
	loc, _ := blockstore.ParseLocator(helloHash + "+11")
	expired := s.SignUntil(loc, userToken, time.Now().Add(-time.Minute)).String()
	otherKey := (&blockstore.Signer{Key: []byte("another-key-another-key-another-key!"), TTL: 336 * time.Hour}).Sign(loc, userToken).String()
	for _, c := range []struct {
		name, path, tok string
		code            int
		body            string
	}{
		{"no token", "/" + signed, "", 401, "no token provided in Authorization header"},
		{"unsigned", "/" + helloHash + "+11", userToken, 400, "invalid signature"},
		{"wrong token", "/" + signed, "someone-else", 400, "invalid signature"},
		{"other key", "/" + otherKey, userToken, 400, "invalid signature"},
		{"malformed", "/" + helloHash + "+11+Adeadbeef@70000000", userToken, 400, "invalid signature"},
		{"expired", "/" + expired, userToken, 401, "expired signature"},
	} {
		for _, m := range []string{"GET", "HEAD"} {
			var hdr []string
			if c.tok != "" {
				hdr = append(hdr, bearer(c.tok))
			}
			r := e.do(m, c.path, nil, hdr...)
			want := c.body + "\n"
			if m == "HEAD" {
				want = ""
			}
			if r.Code != c.code || !strings.HasPrefix(r.Body, strings.TrimSuffix(want, "\n")) {
				t.Errorf("%s %s: %d %q, want %d %q", c.name, m, r.Code, r.Body, c.code, c.body)
			}
			if r.Header.Get("Vary") != "X-Keep-Signature" {
				t.Errorf("%s %s: no Vary header", c.name, m)
			}
		}
	}
}

func TestPutBodyFailures(t *testing.T) {
	e, fv := oneMount(t)
	data, h := volumetest.Block(1, 1000)
	// Body that does not hash to the URL.
	r := e.do("PUT", "/"+helloHash, bytes.NewReader(data))
	e.expect(r, 400, "content hash "+h.String()+" did not match specified locator "+helloHash)
	// Bad hash in the URL.
	e.expect(e.do("PUT", "/"+strings.ToUpper(helloHash), bytes.NewReader(hello)), 400, "Bad Request")
	// Short body: Content-Length 1000, 500 bytes, then the client stops sending.
	code, body := rawPut(t, e.srv.Listener.Addr().String(), h.String(), 1000, data[:500], "")
	if code != 400 || !strings.Contains(body, "did not match") {
		t.Fatalf("short body: %d %q", code, body)
	}
	// Short chunked body, checked against the locator's size hint.
	r = e.do("PUT", "/"+h.String()+"+1000", io.MultiReader(bytes.NewReader(data[:500])))
	e.expect(r, 400, "content length 500 did not match specified data size 1000")
	e.expect(e.do("PUT", "/"+h.String()+"+999", bytes.NewReader(data)), 400, "content length 1000 did not match specified data size 999")
	// Oversized, declared: refused before the body is read.
	code, body = rawPut(t, e.srv.Listener.Addr().String(), h.String(), blockstore.MaxBlockSize+1, nil, "")
	if code != 413 || !strings.HasPrefix(body, "request entity too large") {
		t.Fatalf("oversized: %d %q", code, body)
	}
	// (Oversized chunked bodies: see the end-to-end test in cmd/keepstore.)
	// Nothing was stored by any of these.
	if _, err := fv.Stat(context.Background(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("a failed PUT left a block: %v", err)
	}
	e.expect(e.do("GET", "/index", nil, bearer(adminTok)), 200, "\n")
}

// rawPut sends a PUT over a raw connection: Content-Length size, then
// body (half-closing after a short one). extra is added to the headers.
func rawPut(t *testing.T, addr, hash string, size int64, body []byte, extra string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: keep\r\nContent-Length: %d\r\n%s\r\n", hash, size, extra)
	conn.Write(body)
	if int64(len(body)) < size {
		// Only a short body is ended early (a half-close after a whole
		// body reads, to Go's server, as a client gone away mid-commit).
		conn.(*net.TCPConn).CloseWrite()
	}
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func TestExpectContinueAndStalledBody(t *testing.T) {
	e, _ := oneMount(t, func(o *envOptions) { o.HTTP.BodyIdleTimeout = 300 * time.Millisecond })
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: keep\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n", helloHash)
	br := bufio.NewReader(conn)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
		t.Fatalf("want 100 Continue, got %q", line)
	}
	br.ReadString('\n')
	conn.Write(hello)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("after 100 Continue: %v %v", res, err)
	}
	// A body that stalls longer than BodyIdleTimeout: 408.
	conn2, _ := net.Dial("tcp", e.srv.Listener.Addr().String())
	defer conn2.Close()
	conn2.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn2, "PUT /%s HTTP/1.1\r\nHost: keep\r\nContent-Length: 11\r\n\r\nhello", helloHash)
	res, err = http.ReadResponse(bufio.NewReader(conn2), nil)
	if err != nil || res.StatusCode != 408 {
		t.Fatalf("stalled body: %v %v", res, err)
	}
}

func TestClientGoneIs499(t *testing.T) {
	e, _ := oneMount(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("PUT", "/"+helloHash, bytes.NewReader(hello)).WithContext(ctx)
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	if rec.Code != 499 || rec.Body.Len() != 0 {
		t.Fatalf("got %d %q, want 499 and no body", rec.Code, rec.Body.String())
	}
}

func TestPutFullReadOnlyUnavailable(t *testing.T) {
	full := blockstore.E("fault.Put", blockstore.KindFull)
	down := blockstore.E("fault.Put", blockstore.KindUnavailable, "disk offline")
	specs := []mountSpec{{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa"}, {uuid: "zzzzz-nyw5e-bbbbbbbbbbbbbbb"}}
	setup := func(t *testing.T, f0, f1 faults) (*env, []*faultVolume) {
		var ms []node.Mount
		var fvs []*faultVolume
		for _, s := range specs {
			m, fv, _ := memMount(s)
			ms = append(ms, m)
			fvs = append(fvs, fv)
		}
		fvs[0].set(f0)
		fvs[1].set(f1)
		return newEnv(t, ms), fvs
	}
	t.Run("AllFull", func(t *testing.T) {
		e, _ := setup(t, faults{putErr: full}, faults{putErr: full})
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 507, "insufficient storage")
	})
	t.Run("FullThenGood", func(t *testing.T) {
		e, fvs := setup(t, faults{putErr: full}, faults{})
		// The hash's mount order is aaa, bbb (KEEP-PROTOCOL §8.3).
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 200, helloHash+"+11")
		if fvs[0].putCount() != 1 || fvs[1].putCount() != 1 {
			t.Fatalf("puts: %d %d", fvs[0].putCount(), fvs[1].putCount())
		}
	})
	t.Run("UnavailableBeforeBody", func(t *testing.T) {
		e, _ := setup(t, faults{putErr: down}, faults{})
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 200, helloHash+"+11")
	})
	t.Run("AllUnavailable", func(t *testing.T) {
		e, _ := setup(t, faults{putErr: down}, faults{putErr: full})
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 503, "volume unavailable")
	})
	t.Run("FailsMidBody", func(t *testing.T) {
		e, fvs := setup(t, faults{putFailAfter: 5}, faults{})
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 503, "volume unavailable")
		if fvs[1].putCount() != 0 {
			t.Fatal("a half-read body was offered to a second volume")
		}
	})
	t.Run("ReadOnlyOnly", func(t *testing.T) {
		m, _, mv := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa", readOnly: true})
		mv.Put(context.Background(), blockstore.HashOf(hello), bytes.NewReader(hello), 11)
		e := newEnv(t, []node.Mount{m}, func(o *envOptions) { o.RequireSignatures = false })
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 507, "insufficient storage")
		e.expect(e.do("GET", "/"+helloHash+"+11", nil), 200, string(hello))
		e.expect(e.do("TOUCH", "/"+helloHash+"+11", nil, bearer(adminTok)), 404, "")
		e.expect(e.do("PUT", "/untrash/"+helloHash+"+11", nil, bearer(adminTok)), 404, "")
	})
	t.Run("NoMounts", func(t *testing.T) {
		e := newEnv(t, nil)
		e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 507, "insufficient storage")
	})
}

func TestStorageClasses(t *testing.T) {
	m1, fv1, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa", classes: []string{"default"}})
	m2, fv2, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-bbbbbbbbbbbbbbb", classes: []string{"special", "extra"}, repl: 2})
	e := newEnv(t, []node.Mount{m1, m2})
	r := e.do("PUT", "/"+helloHash, bytes.NewReader(hello), "X-Keep-Storage-Classes: default, special")
	e.expect(r, 200, helloHash+"+11")
	if r.Header.Get("X-Keep-Replicas-Stored") != "3" || r.Header.Get("X-Keep-Storage-Classes-Confirmed") != "default=1, extra=2, special=2" {
		t.Fatalf("headers: %q %q", r.Header.Get("X-Keep-Replicas-Stored"), r.Header.Get("X-Keep-Storage-Classes-Confirmed"))
	}
	for i, fv := range []*faultVolume{fv1, fv2} {
		if _, err := fv.Stat(context.Background(), blockstore.HashOf(hello)); err != nil {
			t.Fatalf("mount %d has no copy: %v", i, err)
		}
	}
	// Asking again touches the copies instead of rewriting them.
	r = e.do("PUT", "/"+helloHash, bytes.NewReader(hello), "X-Keep-Storage-Classes: special")
	e.expect(r, 200, helloHash+"+11")
	if fv1.putCount() != 1 || fv2.putCount() != 1 || r.Header.Get("X-Keep-Storage-Classes-Confirmed") != "extra=2, special=2" {
		t.Fatalf("re-PUT: puts %d %d, confirmed %q", fv1.putCount(), fv2.putCount(), r.Header.Get("X-Keep-Storage-Classes-Confirmed"))
	}
	// Unknown classes are ignored as long as one copy is stored...
	data, h := volumetest.Block(3, 5000)
	r = e.do("PUT", "/"+h.String(), bytes.NewReader(data), "X-Keep-Storage-Classes: special,nonexistent")
	if r.Code != 200 || r.Header.Get("X-Keep-Storage-Classes-Confirmed") != "extra=2, special=2" {
		t.Fatalf("special,nonexistent: %d %v", r.Code, r.Header)
	}
	// ...but a request that no mount can serve is 507.
	e.expect(e.do("PUT", "/"+h.String(), bytes.NewReader(data), "X-Keep-Storage-Classes: nonexistent"), 507, "insufficient storage")
	// The second copy comes from the first volume, not from the body: a
	// PUT whose first copy exists elsewhere still copies it.
	data, h = volumetest.Block(4, 3000)
	fv1.Volume.Put(context.Background(), h, bytes.NewReader(data), 3000)
	r = e.do("PUT", "/"+h.String(), bytes.NewReader(data), "X-Keep-Storage-Classes: default,special")
	if r.Code != 200 || r.Header.Get("X-Keep-Replicas-Stored") != "3" {
		t.Fatalf("copy from existing: %d %v", r.Code, r.Header)
	}
	// An existing block with a bad body is refused and not touched.
	before, _ := fv1.Stat(context.Background(), h)
	bad := append([]byte(nil), data...)
	bad[0] ^= 1
	e.expect(e.do("PUT", "/"+h.String(), bytes.NewReader(bad)), 400, "content hash")
	after, _ := fv1.Stat(context.Background(), h)
	if !after.Mtime.Equal(before.Mtime) {
		t.Fatal("a PUT with a bad body touched the existing copy")
	}
}

func TestRangeReads(t *testing.T) {
	e, _ := oneMount(t, func(o *envOptions) { o.RequireSignatures = false })
	data, h := volumetest.Block(5, 100000)
	e.put(data)
	loc := fmt.Sprintf("/%s+%d", h, len(data))
	for _, c := range []struct {
		rng      string
		code     int
		off, end int // data[off:end]
		cr       string
	}{
		{"bytes=0-9", 206, 0, 10, "bytes 0-9/100000"},
		{"bytes=99990-", 206, 99990, 100000, "bytes 99990-99999/100000"},
		{"bytes=-5", 206, 99995, 100000, "bytes 99995-99999/100000"},
		{"bytes=500-99999999", 206, 500, 100000, "bytes 500-99999/100000"},
		{"bytes=0-99999", 200, 0, 100000, ""},
		{"bytes=1-2,5-6", 200, 0, 100000, ""},
		{"items=1-2", 200, 0, 100000, ""},
		{"bytes=9-3", 200, 0, 100000, ""},
	} {
		r := e.do("GET", loc, nil, "Range: "+c.rng)
		if r.Code != c.code || r.Body != string(data[c.off:c.end]) || r.Header.Get("Content-Range") != c.cr ||
			r.Header.Get("Content-Length") != fmt.Sprint(c.end-c.off) {
			t.Errorf("%s: %d, %d bytes, Content-Range %q", c.rng, r.Code, len(r.Body), r.Header.Get("Content-Range"))
		}
	}
	for _, rng := range []string{"bytes=100000-", "bytes=200000-200001", "bytes=-0"} {
		r := e.do("GET", loc, nil, "Range: "+rng)
		if r.Code != 416 || r.Header.Get("Content-Range") != "bytes */100000" {
			t.Errorf("%s: %d %q", rng, r.Code, r.Header.Get("Content-Range"))
		}
	}
}

func TestCorruptBlocks(t *testing.T) {
	m1, _, mv1 := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa"})
	m2, _, mv2 := memMount(mountSpec{uuid: "zzzzz-nyw5e-bbbbbbbbbbbbbbb"})
	e := newEnv(t, []node.Mount{m1, m2}, func(o *envOptions) { o.RequireSignatures = false; o.BufferSize = 64 << 10 })
	data, h := volumetest.Block(6, 300000)
	for _, mv := range []interface {
		Put(context.Context, blockstore.Hash, io.Reader, int64) error
	}{mv1, mv2} {
		mv.Put(context.Background(), h, bytes.NewReader(data), int64(len(data)))
	}
	// Which mount is read first for h?
	first, second := mv1, mv2
	if blockstore.MountOrder(h, []string{m1.UUID, m2.UUID}, nil)[0] == 1 {
		first, second = mv2, mv1
	}
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 1
	first.Corrupt(h, bad)
	loc := fmt.Sprintf("/%s+%d", h, len(data))
	// With chunk checksums the bad chunk is found before the first byte:
	// the good copy serves the whole block.
	r := e.do("GET", loc, nil)
	if r.Code != 200 || r.Err != nil || r.Body != string(data) || r.Header.Get(keepwire.DataVerified) != keepwire.VerifiedChunks {
		t.Fatalf("corrupt first copy: want 200 from the good one, got %d, %d bytes, err %v, %v", r.Code, len(r.Body), r.Err, r.Header)
	}
	// Without checksums (a block written before them), as before: the
	// whole-block MD5 withholds the last chunk. (A second block, read
	// first from the same mount, that the node has not yet found damaged.)
	firstOf := func(h blockstore.Hash) int { return blockstore.MountOrder(h, []string{m1.UUID, m2.UUID}, nil)[0] }
	want := firstOf(h)
	data, h = volumetest.Block(60, len(data))
	for seed := uint64(61); firstOf(h) != want; seed++ {
		data, h = volumetest.Block(seed, len(data))
	}
	for _, mv := range []*memvolume.Volume{first, second} {
		mv.Put(context.Background(), h, bytes.NewReader(data), int64(len(data)))
		mv.DropChecksums(h)
	}
	bad = append([]byte(nil), data...)
	bad[len(bad)-1] ^= 1
	first.Corrupt(h, bad)
	loc = fmt.Sprintf("/%s+%d", h, len(data))
	r = e.do("GET", loc, nil)
	if r.Code != 200 || r.Err == nil || len(r.Body) >= len(data) {
		t.Fatalf("corrupt GET: want 200 with a body cut short, got %d, %d bytes, err %v", r.Code, len(r.Body), r.Err)
	}
	if !strings.Contains(e.metric("keepstore_corrupt_blocks_total"), " 2") {
		t.Fatalf("corrupt metric: %q", e.metric("keepstore_corrupt_blocks_total"))
	}
	if !strings.Contains(e.logs.String(), "corrupt block") {
		t.Fatal("corruption not logged")
	}
	// The retry is served from the good copy.
	r = e.do("GET", loc, nil)
	if r.Code != 200 || r.Body != string(data) || r.Err != nil {
		t.Fatalf("retry: %d %d bytes %v", r.Code, len(r.Body), r.Err)
	}
	// A PUT rewrites a copy known to be bad even though it exists.
	second.Trash(context.Background(), h)
	e.put(data)
	r = e.do("GET", loc, nil)
	if r.Code != 200 || r.Body != string(data) || r.Err != nil {
		t.Fatalf("after re-PUT: %d %d bytes %v", r.Code, len(r.Body), r.Err)
	}
}

func TestReadFailover(t *testing.T) {
	m1, fv1, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa"})
	m2, fv2, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-bbbbbbbbbbbbbbb"})
	e := newEnv(t, []node.Mount{m1, m2}, func(o *envOptions) { o.RequireSignatures = false; o.BufferSize = 32 << 10 })
	data, h := volumetest.Block(7, 3<<20)
	for _, fv := range []*faultVolume{fv1, fv2} {
		fv.Volume.Put(context.Background(), h, bytes.NewReader(data), int64(len(data)))
	}
	// Whichever mount is first fails 1.5 MiB into its read (in the second
	// checksum chunk); the read goes on from the other at the start of
	// that chunk.
	fv1.set(faults{getFailAfter: 3 << 19})
	fv2.set(faults{getFailAfter: 3 << 19})
	loc := fmt.Sprintf("/%s+%d", h, len(data))
	r := e.do("GET", loc, nil)
	if r.Code != 200 || r.Err == nil {
		t.Fatalf("both failing: want a cut body, got %d %v", r.Code, r.Err)
	}
	fv2.set(faults{})
	r = e.do("GET", loc, nil)
	if r.Code != 200 || r.Body != string(data) || r.Err != nil {
		t.Fatalf("failover: %d, %d bytes, %v", r.Code, len(r.Body), r.Err)
	}
	// A volume that errors before the first byte: the next one serves it;
	// errors win over not-found when nobody has it.
	fv1.set(faults{getErr: blockstore.E("x", blockstore.KindUnavailable, "offline")})
	e.expect(e.do("GET", loc, nil), 200, string(data[:100]))
	fv2.set(faults{getErr: blockstore.E("x", blockstore.KindUnavailable, "offline")})
	e.expect(e.do("GET", loc, nil), 503, "offline")
}

func TestAdminAuth(t *testing.T) {
	e, _ := oneMount(t)
	reqs := []struct{ method, path string }{
		{"GET", "/index"}, {"GET", "/index/6f0"}, {"GET", "/mounts"}, {"GET", "/mounts/zzzzz-nyw5e-aaaaaaaaaaaaaaa/blocks"},
		{"PUT", "/trash"}, {"PUT", "/untrash/" + helloHash + "+11"}, {"TOUCH", "/" + helloHash + "+11"}, {"DELETE", "/" + helloHash + "+11"},
	}
	for _, c := range reqs {
		e.expect(e.do(c.method, c.path, strings.NewReader("[]")), 401, "Unauthorized")
		e.expect(e.do(c.method, c.path, strings.NewReader("[]"), bearer(userToken)), 403, "Forbidden")
		e.expect(e.do(c.method, c.path, strings.NewReader("[]"), bearer(mgmtTok)), 403, "Forbidden")
	}
	// Without an admin token configured, admin endpoints refuse everyone.
	e2, _ := oneMount(t, func(o *envOptions) { o.HTTP.AdminToken = "" })
	for _, c := range reqs {
		e2.expect(e2.do(c.method, c.path, strings.NewReader("[]"), bearer(adminTok)), 403, "Forbidden")
	}
}

func TestIndexAndMounts(t *testing.T) {
	m1, fv1, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-bbbbbbbbbbbbbbb", classes: []string{"fast"}, repl: 2})
	m2, fv2, _ := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa", readOnly: true})
	e := newEnv(t, []node.Mount{m1, m2})
	// Empty index: just the blank line.
	e.expect(e.do("GET", "/index", nil, bearer(adminTok)), 200, "\n")
	d1, h1 := volumetest.Block(10, 100)
	d2, h2 := volumetest.Block(11, 200)
	fv1.Volume.Put(context.Background(), h1, bytes.NewReader(d1), 100)
	fv1.Volume.Put(context.Background(), h2, bytes.NewReader(d2), 200)
	fv2.Volume.Put(context.Background(), h1, bytes.NewReader(d1), 100)
	i1, _ := fv1.Stat(context.Background(), h1)
	i1ro, _ := fv2.Stat(context.Background(), h1)
	line1 := fmt.Sprintf("%s+100 %d\n", h1, i1.Mtime.UnixNano())
	line1ro := fmt.Sprintf("%s+100 %d\n", h1, i1ro.Mtime.UnixNano())
	r := e.do("GET", "/index", nil, bearer(adminTok))
	if r.Code != 200 || !strings.HasSuffix(r.Body, "\n\n") || strings.Count(r.Body, "\n") != 4 ||
		!strings.HasPrefix(r.Body, line1ro) || !strings.Contains(r.Body, line1) {
		t.Fatalf("index: %d %q", r.Code, r.Body)
	}
	p := h1.String()[:3]
	if h2.String()[:3] == p {
		t.Fatal("test data: the two blocks' hash prefixes collide; pick other contents")
	}
	for _, path := range []string{"/index/" + p, "/index?prefix=" + p, "/index/fff?prefix=" + p} {
		r = e.do("GET", path, nil, bearer(adminTok))
		if r.Code != 200 || r.Body != line1ro+line1+"\n" {
			t.Fatalf("%s: %d %q", path, r.Code, r.Body)
		}
	}
	r = e.do("GET", "/mounts/zzzzz-nyw5e-bbbbbbbbbbbbbbb/blocks?prefix="+p, nil, bearer(adminTok))
	if r.Code != 200 || r.Body != line1+"\n" {
		t.Fatalf("mount index: %d %q", r.Code, r.Body)
	}
	e.expect(e.do("GET", "/index/XYZ", nil, bearer(adminTok)), 400, "invalid prefix")
	e.expect(e.do("GET", "/mounts/zzzzz-nyw5e-ccccccccccccccc/blocks", nil, bearer(adminTok)), 404, "no mount")
	// Compressed on request (when it is long enough to be worth it).
	for i := 0; i < 30; i++ {
		d, h := volumetest.Block(uint64(100+i), 10)
		fv1.Volume.Put(context.Background(), h, bytes.NewReader(d), 10)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/index", nil)
	req.Header.Set("Authorization", "Bearer "+adminTok)
	req.Header.Set("Accept-Encoding", "gzip")
	res, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil || res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip index: %v %v", err, res.Header)
	}
	res.Body.Close()
	// An error after output has started: no final blank line.
	fv1.set(faults{indexFailAfter: 1})
	r = e.do("GET", "/mounts/zzzzz-nyw5e-bbbbbbbbbbbbbbb/blocks", nil, bearer(adminTok), "Accept-Encoding: identity")
	if r.Code != 200 || strings.Count(r.Body, "\n") != 1 || strings.HasSuffix(r.Body, "\n\n") {
		t.Fatalf("failed index: %d %q", r.Code, r.Body)
	}
	fv1.set(faults{})

	r = e.do("GET", "/mounts", nil, bearer(adminTok))
	want := `[{"uuid":"zzzzz-nyw5e-aaaaaaaaaaaaaaa","device_id":"mem:","allow_write":false,"allow_trash":false,"replication":1,"storage_classes":{"default":true}},` +
		`{"uuid":"zzzzz-nyw5e-bbbbbbbbbbbbbbb","device_id":"mem:","allow_write":true,"allow_trash":true,"replication":2,"storage_classes":{"fast":true}}]` + "\n"
	if r.Code != 200 || r.Body != want || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("mounts: %d %q", r.Code, r.Body)
	}
}

func TestTouchTrashUntrash(t *testing.T) {
	e, fv := oneMount(t, func(o *envOptions) { o.RequireSignatures = false })
	e.put(hello)
	h := blockstore.HashOf(hello)
	before, _ := fv.Stat(context.Background(), h)
	time.Sleep(5 * time.Millisecond)
	e.expect(e.do("TOUCH", "/"+helloHash+"+11", nil, bearer(adminTok)), 200, "")
	after, _ := fv.Stat(context.Background(), h)
	if !after.Mtime.After(before.Mtime) {
		t.Fatal("TOUCH did not move the mtime")
	}
	e.expect(e.do("TOUCH", "/0123456789abcdef0123456789abcdef", nil, bearer(adminTok)), 404, "")
	e.expect(e.do("DELETE", "/"+helloHash+"+11", nil, bearer(adminTok)), 200, "")
	e.expect(e.do("GET", "/"+helloHash+"+11", nil), 404, "")
	e.expect(e.do("DELETE", "/"+helloHash+"+11", nil, bearer(adminTok)), 404, "")
	e.expect(e.do("PUT", "/untrash/"+helloHash+"+11", nil, bearer(adminTok)), 200, "")
	e.expect(e.do("GET", "/"+helloHash+"+11", nil), 200, string(hello))
	e.expect(e.do("PUT", "/untrash/"+helloHash+"+11", nil, bearer(adminTok)), 404, "")
	e.expect(e.do("PUT", "/untrash/nothex", nil, bearer(adminTok)), 400, "invalid locator")

	e2, _ := oneMount(t, func(o *envOptions) { o.TrashEnabled = false })
	e2.expect(e2.do("DELETE", "/"+helloHash+"+11", nil, bearer(adminTok)), 405, "method not allowed")
	e2.expect(e2.do("PUT", "/trash", strings.NewReader("[]"), bearer(adminTok)), 405, "method not allowed")
}

func TestTrashList(t *testing.T) {
	m, fv, mv := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa"})
	past := time.Now().Add(-time.Hour)
	mv.Now = func() time.Time { return past }
	e := newEnv(t, []node.Mount{m}, func(o *envOptions) { o.SignatureTTL = time.Minute })
	dOld, hOld := volumetest.Block(20, 100)
	dMoved, hMoved := volumetest.Block(21, 100)
	for _, d := range [][]byte{dOld, dMoved} {
		mv.Put(context.Background(), blockstore.HashOf(d), bytes.NewReader(d), 100)
	}
	mv.Now = time.Now
	dNew, hNew := volumetest.Block(22, 100)
	mv.Put(context.Background(), hNew, bytes.NewReader(dNew), 100)
	mtime := func(h blockstore.Hash) int64 { i, _ := fv.Stat(context.Background(), h); return i.Mtime.UnixNano() }
	list := []node.TrashItem{
		{Locator: hOld.String() + "+100", BlockMtime: mtime(hOld)},
		{Locator: hMoved.String() + "+100", BlockMtime: mtime(hMoved) - 1},
		{Locator: hNew.String() + "+100", BlockMtime: mtime(hNew)},
		{Locator: "garbage", BlockMtime: 1},
	}
	body, _ := json.Marshal(list)
	e.expect(e.do("PUT", "/trash", bytes.NewReader(body), bearer(adminTok)), 200, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st node.Status
		json.Unmarshal([]byte(e.do("GET", "/status.json", nil, bearer(mgmtTok)).Body), &st)
		if st.TrashQueue.Queued == 0 && st.TrashQueue.InProgress == 0 && strings.Contains(e.metric("trash_list_items_total"), "invalid") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("trash list not processed: %+v", st.TrashQueue)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for h, want := range map[blockstore.Hash]bool{hOld: false, hMoved: true, hNew: true} {
		if _, err := fv.Stat(context.Background(), h); (err == nil) != want {
			t.Errorf("%s present=%v, want %v", h, err == nil, want)
		}
	}
	e.expect(e.do("PUT", "/trash", strings.NewReader("{not json"), bearer(adminTok)), 400, "trash list")
}

func TestHealthMetricsStatus(t *testing.T) {
	e, _ := oneMount(t)
	e.expect(e.do("GET", "/_health/ping", nil), 401, "authorization required")
	e.expect(e.do("GET", "/_health/ping", nil, bearer("wrong")), 403, "authorization error")
	e.expect(e.do("GET", "/_health/ping", nil, "Authorization: OAuth2 "+mgmtTok), 403, "authorization error")
	r := e.do("GET", "/_health/ping", nil, bearer(mgmtTok))
	if r.Code != 200 || r.Body != `{"health":"OK"}`+"\n" || r.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("health: %d %q %v", r.Code, r.Body, r.Header)
	}
	for _, p := range []string{"/metrics", "/status.json"} {
		e.expect(e.do("GET", p, nil), 401, "Unauthorized")
		e.expect(e.do("GET", p, nil, bearer(adminTok)), 403, "Forbidden")
	}
	e.put(hello)
	m := e.do("GET", "/metrics", nil, bearer(mgmtTok))
	for _, want := range []string{`keepstore_requests_total{code="200",method="PUT"} 1`, "keepstore_buffer_budget_in_use_bytes 0",
		"keepstore_buffer_budget_limit_bytes 2.68435456e+08", `keepstore_volume_operations_total{operation="put",volume="zzzzz-nyw5e-aaaaaaaaaaaaaaa"} 1`,
		"keepstore_received_bytes_total 11"} {
		if !strings.Contains(m.Body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	var st node.Status
	if err := json.Unmarshal([]byte(e.do("GET", "/status.json", nil, bearer(mgmtTok)).Body), &st); err != nil ||
		st.Version != "test" || len(st.Volumes) != 1 || st.MemoryBudget.Limit != 256<<20 {
		t.Fatalf("status: %+v %v", st, err)
	}
	// No management token: health is disabled, metrics and status open.
	e2, _ := oneMount(t, func(o *envOptions) { o.HTTP.ManagementToken = "" })
	e2.expect(e2.do("GET", "/_health/ping", nil, bearer(mgmtTok)), 404, "disabled")
	e2.expect(e2.do("GET", "/metrics", nil), 200, "")
	e2.expect(e2.do("GET", "/status.json", nil), 200, "{")
	// Secrets never reach the logs.
	for _, s := range []string{adminTok, mgmtTok, userToken, testKey} {
		if strings.Contains(e.logs.String(), s) {
			t.Errorf("log contains the secret %q", s)
		}
	}
	if !strings.Contains(e.logs.String(), `"request_id":"req-`) {
		t.Error("no request id in the logs")
	}
}

func TestRequestID(t *testing.T) {
	e, _ := oneMount(t)
	if got := e.do("GET", "/", nil, "X-Request-Id: req-fromclient").Header.Get("X-Request-Id"); got != "req-fromclient" {
		t.Errorf("echo: %q", got)
	}
	if got := e.do("GET", "/", nil).Header.Get("X-Request-Id"); !strings.HasPrefix(got, "req-") || len(got) != 24 {
		t.Errorf("generated: %q", got)
	}
}

func TestMemoryBudgetAndLimiter(t *testing.T) {
	e, _ := oneMount(t, func(o *envOptions) {
		o.RequireSignatures = false
		o.MemoryBudget = 2 << 20 // one copy buffer and one checksum chunk
		o.BudgetWait = 100 * time.Millisecond
	})
	e.put(hello)
	data, h := volumetest.Block(30, 2<<20)
	pr, pw := io.Pipe()
	done := make(chan resp)
	go func() { done <- e.do("PUT", "/"+h.String(), pr) }()
	pw.Write(data[:1<<20])
	e.waitBudgetInUse() // the slow PUT now holds the whole budget
	for _, r := range []resp{e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), e.do("GET", "/"+helloHash+"+11", nil)} {
		if r.Code != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(r.Body, "memory budget") {
			t.Fatalf("over budget: %d %q %v", r.Code, r.Body, r.Header)
		}
	}
	if got := e.metric("keepstore_buffer_budget_in_use_bytes"); got != "keepstore_buffer_budget_in_use_bytes 2.097152e+06" {
		t.Errorf("budget metric: %q", got)
	}
	// HEAD needs no buffer.
	e.expect(e.do("HEAD", "/"+helloHash+"+11", nil), 200, "")
	pw.Write(data[1<<20:])
	pw.Close()
	if r := <-done; r.Code != 200 {
		t.Fatalf("slow PUT: %d %s", r.Code, r.Body)
	}
	e.expect(e.do("GET", "/"+helloHash+"+11", nil), 200, string(hello))

	e2, _ := oneMount(t, func(o *envOptions) {
		o.RequireSignatures = false
		o.MaxConcurrentRequests = 1
		o.BudgetWait = 100 * time.Millisecond
	})
	pr, pw = io.Pipe()
	go func() { done <- e2.do("PUT", "/"+h.String(), pr) }()
	pw.Write(data[:1000])
	e2.waitBudgetInUse() // the slow PUT holds the only request slot
	r := e2.do("GET", "/"+helloHash+"+11", nil)
	if r.Code != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("over the request cap: %d %q", r.Code, r.Body)
	}
	e2.expect(e2.do("GET", "/_health/ping", nil, bearer(mgmtTok)), 200, "")
	pw.Write(data[1000:])
	pw.Close()
	<-done
}

func TestAllowedNetworks(t *testing.T) {
	e, _ := oneMount(t, func(o *envOptions) {
		o.HTTP.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		o.HTTP.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	r := e.do("GET", "/"+helloHash+"+11", nil)
	e.expect(r, 403, "Forbidden: client address 127.0.0.1 is not in this keepstore's allowed_networks")
	checkNoCORS(t, r)
	e.expect(e.do("GET", "/_health/ping", nil, bearer(mgmtTok), "X-Forwarded-For: 10.9.8.7"), 200, "")
	e.expect(e.do("GET", "/_health/ping", nil, bearer(mgmtTok), "X-Forwarded-For: 192.168.1.1"), 403, "Forbidden: client address 192.168.1.1")
}

func TestStalledReaderReleasesBudget(t *testing.T) {
	e, fv := oneMount(t, func(o *envOptions) {
		o.RequireSignatures = false
		o.HTTP.BodyIdleTimeout = 300 * time.Millisecond
	})
	data, h := volumetest.Block(40, 16<<20)
	fv.Volume.Put(context.Background(), h, bytes.NewReader(data), int64(len(data)))
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(conn, "GET /%s+%d HTTP/1.1\r\nHost: keep\r\n\r\n", h, len(data)) // and never read
	e.waitBudgetInUse()
	deadline := time.Now().Add(10 * time.Second)
	for e.n.Status().MemoryBudget.InUse != 0 {
		if time.Now().After(deadline) {
			t.Fatal("a client that stopped reading still holds its buffer")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A volume that takes longer than BodyIdleTimeout to commit after the body
// has ended must not see the request cancelled.
func TestSlowCommitAfterBody(t *testing.T) {
	e, fv := oneMount(t, func(o *envOptions) { o.HTTP.BodyIdleTimeout = 200 * time.Millisecond })
	fv.set(faults{slowCommit: 700 * time.Millisecond})
	e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 200, helloHash+"+11")
}

// countingReader counts the reads that reach it.
type countingReader struct {
	r     io.Reader
	reads int
}

func (c *countingReader) Read(p []byte) (int, error) { c.reads++; return c.r.Read(p) }

// After the end of a PUT body, reads must not reach the progress reader
// again: each of its reads re-arms the connection's read deadline, and a
// deadline expiring after the body's end cancels the request.
func TestBodyEndIsSticky(t *testing.T) {
	cr := &countingReader{r: strings.NewReader("abc")}
	b := httpserver.ProgressBody(httptest.NewRecorder(), httptest.NewRequest("PUT", "/", cr), time.Minute)
	if got, err := io.ReadAll(b); string(got) != "abc" || err != nil {
		t.Fatalf("%q %v", got, err)
	}
	before := cr.reads
	for i := 0; i < 3; i++ {
		if n, err := b.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Fatalf("read after the end: %d %v", n, err)
		}
	}
	if cr.reads != before {
		t.Fatalf("%d reads reached the body after its end", cr.reads-before)
	}
}

// A GET's write deadline ends with its response: the next request on a
// kept-alive connection (keepproxy pools them) is answered even when it
// comes after more than BodyIdleTimeout.
func TestKeptAliveConnectionAfterIdleTimeout(t *testing.T) {
	e, fv := oneMount(t, func(o *envOptions) {
		o.RequireSignatures = false
		o.HTTP.BodyIdleTimeout = 200 * time.Millisecond
	})
	data, h := volumetest.Block(41, 100<<10)
	fv.Volume.Put(context.Background(), h, bytes.NewReader(data), int64(len(data)))
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	for i := 0; i < 2; i++ {
		if i == 1 {
			time.Sleep(500 * time.Millisecond) // longer than BodyIdleTimeout
		}
		fmt.Fprintf(conn, "GET /%s+%d HTTP/1.1\r\nHost: keep\r\n\r\n", h, len(data))
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %d on one connection: %v", i+1, err)
		}
		got, err := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GET %d on one connection: %d, %d bytes, %v", i+1, res.StatusCode, len(got), err)
		}
	}
}
