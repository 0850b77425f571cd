package rawhttp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// origin serves data at /whole, a body cut short at /short, a chunked
// body at /chunked and counts the connections it accepted.
func origin(t *testing.T, data []byte) (*httptest.Server, *atomic.Int32) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/whole":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
		case "/short":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:len(data)/2])
			panic(http.ErrAbortHandler)
		case "/chunked":
			w.Write(data[:10])
			w.(http.Flusher).Flush()
			w.Write(data[10:])
		case "/stall":
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data[:100])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			http.Error(w, "no such thing", http.StatusNotFound)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &conns
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{1})
	r.Read(b)
	return b
}

func get(t *testing.T, c *Client, ctx context.Context, method, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, method, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestReadWholeAndReuse(t *testing.T) {
	data := randomBytes(3 << 20)
	srv, conns := origin(t, data)
	c := New(Options{})
	for i := 0; i < 3; i++ {
		resp := get(t, c, context.Background(), "GET", srv.URL+"/whole")
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("read %d bytes, err %v", len(got), err)
		}
	}
	resp := get(t, c, context.Background(), "HEAD", srv.URL+"/whole")
	if resp.ContentLength != int64(len(data)) {
		t.Fatalf("HEAD content length %d", resp.ContentLength)
	}
	resp.Body.Close()
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for 4 sequential requests; want 1 (kept alive)", n)
	}
}

func TestErrorStatusBodyAndReuse(t *testing.T) {
	srv, conns := origin(t, randomBytes(10))
	c := New(Options{})
	for i := 0; i < 2; i++ {
		resp := get(t, c, context.Background(), "GET", srv.URL+"/nothing")
		text, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || string(bytes.TrimSpace(text)) != "no such thing" {
			t.Fatalf("got %d %q", resp.StatusCode, text)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections; want 1", n)
	}
}

func TestShortBody(t *testing.T) {
	data := randomBytes(1 << 20)
	srv, _ := origin(t, data)
	c := New(Options{})
	resp := get(t, c, context.Background(), "GET", srv.URL+"/short")
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !errors.Is(err, ErrSourceEnded) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v after %d bytes; want ErrSourceEnded", err, len(got))
	}
	if !bytes.Equal(got, data[:len(got)]) || len(got) >= len(data) {
		t.Fatalf("got %d wrong or too many bytes", len(got))
	}
}

func TestChunked(t *testing.T) {
	data := randomBytes(100 << 10)
	srv, _ := origin(t, data)
	c := New(Options{})
	resp := get(t, c, context.Background(), "GET", srv.URL+"/chunked")
	var out bytes.Buffer
	for {
		_, err := resp.Body.(*Body).SpliceTo(&out, 7000)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	resp.Body.Close()
	if !bytes.Equal(out.Bytes(), data) {
		t.Fatalf("chunked body: got %d bytes", out.Len())
	}
}

// relay is a plain-HTTP server that sends /whole of the origin to its
// client with SpliceTo in segments of seg bytes: the shape of a proxy.
func relay(t *testing.T, c *Client, originURL string, seg int64) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp := get(t, c, r.Context(), "GET", originURL+r.URL.Path)
		defer resp.Body.Close()
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		w.Header().Set("Content-Type", "application/octet-stream")
		b := resp.Body.(*Body)
		for b.Remaining() > 0 {
			if _, err := b.SpliceTo(w, seg); err != nil {
				panic(http.ErrAbortHandler)
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSpliceThroughRelay(t *testing.T) {
	data := randomBytes(9<<20 + 12345)
	or, conns := origin(t, data)
	c := New(Options{})
	rl := relay(t, c, or.URL, 1<<20)
	for i := 0; i < 3; i++ {
		resp, err := http.Get(rl.URL + "/whole")
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("relayed %d of %d bytes, equal %v, err %v", len(got), len(data), bytes.Equal(got, data[:min(len(got), len(data))]), err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d origin connections for 3 relayed GETs; want 1", n)
	}
}

func TestStaleIdleConnectionReplaced(t *testing.T) {
	data := randomBytes(1000)
	srv, conns := origin(t, data)
	c := New(Options{})
	resp := get(t, c, context.Background(), "GET", srv.URL+"/whole")
	io.ReadAll(resp.Body)
	resp.Body.Close()
	srv.CloseClientConnections() // the server drops the idle connection
	time.Sleep(50 * time.Millisecond)
	resp = get(t, c, context.Background(), "GET", srv.URL+"/whole")
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("after a stale connection: %d bytes, %v", len(got), err)
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections; want 2", n)
	}
}

func TestCancelMidBody(t *testing.T) {
	srv, _ := origin(t, randomBytes(1<<20))
	c := New(Options{})
	ctx, cancel := context.WithCancel(context.Background())
	resp := get(t, c, ctx, "GET", srv.URL+"/stall")
	buf := make([]byte, 100)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := resp.Body.(*Body).SpliceTo(io.Discard, 1<<20)
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("SpliceTo after cancel: %v after %v", err, time.Since(start))
	}
	resp.Body.Close()
	if len(c.idle) != 0 {
		t.Fatalf("a cancelled connection went back to the pool")
	}
}

func TestRefusesWhatItCannotDo(t *testing.T) {
	c := New(Options{})
	for _, tc := range []struct{ method, url string }{{"GET", "https://example.invalid/x"}, {"PUT", "http://127.0.0.1:1/x"}} {
		req, _ := http.NewRequest(tc.method, tc.url, nil)
		if _, err := c.Do(req); err == nil {
			t.Errorf("%s %s: no error", tc.method, tc.url)
		}
	}
}
