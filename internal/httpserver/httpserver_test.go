package httpserver

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

func TestClientIPTrustsOnlyConfiguredProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.0.0/16")}
	var got string
	h := WithClientIP(trusted, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = ClientIP(r) }))
	cases := []struct{ remote, xff, realIP, want string }{
		{"127.0.0.1:5000", "203.0.113.9", "", "203.0.113.9"},             // nginx on loopback
		{"127.0.0.1:5000", "198.51.100.1, 10.1.2.3", "", "198.51.100.1"}, // two trusted hops
		{"127.0.0.1:5000", "1.2.3.4, 198.51.100.7", "", "198.51.100.7"},  // left part is client-controlled
		{"192.0.2.50:4000", "203.0.113.9", "", "192.0.2.50"},             // untrusted peer: header ignored
		{"127.0.0.1:5000", "", "203.0.113.10", "203.0.113.10"},           // X-Real-IP from a trusted peer
		{"192.0.2.50:4000", "", "203.0.113.10", "192.0.2.50"},            // ... ignored from others
		{"127.0.0.1:5000", "not-an-ip", "", "127.0.0.1"},                 // garbage
		{"[::1]:5000", "203.0.113.9", "", "::1"},                         // ::1 not trusted here
	}
	for _, c := range cases {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = c.remote
		if c.xff != "" {
			r.Header.Set("X-Forwarded-For", c.xff)
		}
		if c.realIP != "" {
			r.Header.Set("X-Real-Ip", c.realIP)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != c.want {
			t.Errorf("remote %s xff %q real %q: client %q, want %q", c.remote, c.xff, c.realIP, got, c.want)
		}
	}
}

func TestWriteError(t *testing.T) {
	cases := []struct {
		err    error
		status int
		body   string
		retry  bool
	}{
		{blockstore.Errorf(blockstore.KindNotFound, "Block not found"), 404, "Block not found\n", false},
		{blockstore.E("x", blockstore.KindFull, errors.New("disk")), 507, "insufficient storage\n", false},
		{blockstore.Errorf(blockstore.KindOverloaded, "busy"), 503, "busy\n", true},
		{errors.New("secret internal detail"), 500, "internal error\n", false},
		{blockstore.E("x", blockstore.KindCanceled), 499, "", false},
	}
	for _, c := range cases {
		rec := httptest.NewRecorder()
		WriteError(rec, c.err)
		if rec.Code != c.status || rec.Body.String() != c.body || (rec.Header().Get("Retry-After") != "") != c.retry {
			t.Errorf("%v: %d %q retry-after %q", c.err, rec.Code, rec.Body.String(), rec.Header().Get("Retry-After"))
		}
	}
}

func TestToken(t *testing.T) {
	r := httptest.NewRequest("GET", "/?api_token=q", nil)
	if Token(r, true) != "q" || Token(r, false) != "" {
		t.Fatal("query token")
	}
	r.Header.Set("Authorization", "OAuth2  tok ")
	if Token(r, false) != "tok" {
		t.Fatal("OAuth2")
	}
	r.Header.Set("Authorization", "Basic xyz")
	if Token(r, false) != "" {
		t.Fatal("Basic must not count as a bearer token")
	}
	r = httptest.NewRequest("GET", "/", nil)
	r.AddCookie(&http.Cookie{Name: "arvados_api_token", Value: base64.URLEncoding.EncodeToString([]byte("ck"))})
	if Token(r, true) != "ck" {
		t.Fatal("cookie")
	}
}

func TestAccessLogRedactsSignatures(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	h := WithAccessLog(log, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	sig := "acbd18db4cc2f85cedef654fccc4a4d8+3+A89118b78732c33104a4d6231e8b5a5fa1e4301e3@7fffffff"
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/"+sig+"?api_token=secret", nil))
	out := buf.String()
	if strings.Contains(out, "89118b78732c") || strings.Contains(out, "secret") || !strings.Contains(out, "acbd18db4cc2f85cedef654fccc4a4d8+3+A") {
		t.Fatalf("access log: %s", out)
	}
}

func TestProgressBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, ProgressBody(w, r, 300*time.Millisecond))
		if err != nil {
			WriteError(w, err)
			return
		}
		w.Write([]byte(strings.Repeat("x", int(n%10))))
	}))
	defer srv.Close()
	// Slow but steady: 20 pieces, 100 ms apart (2 s in all) — never cut off.
	pr, pw := io.Pipe()
	go func() {
		for i := 0; i < 20; i++ {
			pw.Write(make([]byte, 1000))
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	req, _ := http.NewRequest("PUT", srv.URL, pr)
	req.ContentLength = 20000
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("slow steady body: %v %v", err, resp)
	}
	resp.Body.Close()
	// Stalled: 1000 bytes then nothing for a second → 408.
	pr2, pw2 := io.Pipe()
	go func() { pw2.Write(make([]byte, 1000)); time.Sleep(1500 * time.Millisecond); pw2.Close() }()
	req, _ = http.NewRequest("PUT", srv.URL, pr2)
	req.ContentLength = 20000
	resp, err = http.DefaultClient.Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != 408 {
			t.Fatalf("stalled body: %d, want 408", resp.StatusCode)
		}
	}
}
