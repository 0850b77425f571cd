package httpserver

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testLimits are small limits for in-process tests.
func testLimits() Limits {
	return Limits{MaxHeaderBytes: 8 << 10, MaxHeaderFields: 20, MaxConnections: 64,
		ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second}
}

type testServer struct {
	addr string
	srv  *Server
	reg  *prometheus.Registry
	logs *syncLog
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer serves an echo handler (200, the body's length) with lim.
func startServer(t *testing.T, lim Limits) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, lim)
}

func serveOn(t *testing.T, ln net.Listener, lim Limits) *testServer {
	t.Helper()
	logs := &syncLog{}
	reg := prometheus.NewRegistry()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "ok %d\n", n)
	})
	srv, err := NewServer(Options{Handler: h, Logger: slog.New(slog.NewJSONHandler(logs, nil)), Registry: reg, Namespace: "test", Limits: lim})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
	return &testServer{addr: ln.Addr().String(), srv: srv, reg: reg, logs: logs}
}

// dialFrom connects from the local address ip (any 127/8 address works
// on Linux loopback).
func (s *testServer) dialFrom(t *testing.T, ip string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c
}

// roundTrip writes req on c and reads one response.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader, req string) (*http.Response, string) {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatalf("write: %v", err)
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res, string(b)
}

func get(headers int) string {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: t\r\n")
	for i := 1; i < headers; i++ { // Host is one
		fmt.Fprintf(&b, "X-F%d: v\r\n", i)
	}
	b.WriteString("\r\n")
	return b.String()
}

func (s *testServer) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := s.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			return m.Counter.GetValue()
		}
	}
	t.Fatalf("no metric %s %v", name, labels)
	return 0
}

func TestHeaderFieldsCapped(t *testing.T) {
	s := startServer(t, testLimits())
	c := s.dialFrom(t, "127.0.0.1")
	br := bufio.NewReader(c)
	// At the cap, on one keep-alive connection, twice: each request
	// starts a new count.
	for i := 0; i < 2; i++ {
		if res, body := roundTrip(t, c, br, get(20)); res.StatusCode != 200 || body != "ok 0\n" {
			t.Fatalf("20 fields: %d %q", res.StatusCode, body)
		}
	}
	// A body full of newlines is no header.
	body := strings.Repeat("\n", 5000)
	req := fmt.Sprintf("PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	if res, got := roundTrip(t, c, br, req); res.StatusCode != 200 || got != "ok 5000\n" {
		t.Fatalf("PUT with newlines: %d %q", res.StatusCode, got)
	}
	// Pipelined: the second request arrives with the first, so net/http
	// parses it from its buffer; its long body must not be counted.
	big := strings.Repeat("\n", 200<<10)
	if _, err := io.WriteString(c, get(20)+fmt.Sprintf("PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s", len(big), big)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ok 0\n", fmt.Sprintf("ok %d\n", len(big))} {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 || string(b) != want {
			t.Fatalf("pipelined: %d %q, want %q", res.StatusCode, b, want)
		}
	}
	// One field more: 431, and the connection is closed.
	res, got := roundTrip(t, c, br, get(21))
	if res.StatusCode != 431 || got != "too many header fields (max_header_fields 20)\n" || !res.Close {
		t.Fatalf("21 fields: %d %q close=%v", res.StatusCode, got, res.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("after 431 the connection should be closed, read: %v", err)
	}
	// Empty lines before the request line count too (and do not end the count).
	c2 := s.dialFrom(t, "127.0.0.1")
	if res, _ := roundTrip(t, c2, bufio.NewReader(c2), strings.Repeat("\r\n", 30)+get(2)); res.StatusCode != 431 {
		t.Fatalf("leading empty lines: %d, want 431", res.StatusCode)
	}
	if n := s.metric(t, "test_header_fields_rejected_total"); n != 2 {
		t.Fatalf("header_fields_rejected_total %v, want 2", n)
	}
}

func TestHeaderBytesCapped(t *testing.T) {
	s := startServer(t, testLimits())
	c := s.dialFrom(t, "127.0.0.1")
	// A few long fields: under the field cap, over the byte cap.
	req := "GET / HTTP/1.1\r\nHost: t\r\nX-Pad: " + strings.Repeat("a", 16<<10) + "\r\n\r\n"
	res, _ := roundTrip(t, c, bufio.NewReader(c), req)
	if res.StatusCode != 431 {
		t.Fatalf("16 KiB header with max_header_bytes 8KiB: %d, want 431", res.StatusCode)
	}
}

func TestHeaderGuardScan(t *testing.T) {
	var g headerGuard
	g.reset(3) // 4 lines: request line + 3 fields
	for _, chunk := range []string{"GET / HTTP/1.1\r", "\nA: 1\r\nB:", " 2\r\nC: 3\r\n", "\r", "\nbody\nbody\n"} {
		if g.scan([]byte(chunk)) {
			t.Fatalf("over the limit at %q", chunk)
		}
	}
	if g.on.Load() {
		t.Fatal("the empty line did not end the header section")
	}
	g.reset(3)
	if !g.scan([]byte("GET / HTTP/1.1\nA:\nB:\nC:\nD:\n\n")) {
		t.Fatal("4 fields with a cap of 3 passed")
	}
}

// Near the global cap, idle keep-alive connections make room for new ones.
func TestGlobalCapReclaimsIdle(t *testing.T) {
	lim := testLimits()
	lim.MaxConnections = 16
	s := startServer(t, lim)
	var conns []net.Conn
	for i := 0; i < 40; i++ {
		c := s.dialFrom(t, "127.0.0.1")
		if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
			t.Fatalf("connection %d: %d", i, res.StatusCode)
		}
		conns = append(conns, c)
	}
	if open := s.metric(t, "test_connections_open"); open > 16 {
		t.Fatalf("%v connections open, cap 16", open)
	}
	if n := s.metric(t, "test_connections_reclaimed_total"); n < 24 {
		t.Fatalf("reclaimed %v, want at least 24", n)
	}
	// The oldest were closed; the newest still work.
	last := conns[len(conns)-1]
	if res, _ := roundTrip(t, last, bufio.NewReader(last), get(2)); res.StatusCode != 200 {
		t.Fatalf("newest connection: %d", res.StatusCode)
	}
	conns[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conns[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("the oldest idle connection is still open")
	}
}

// At the cap with nothing idle, new connections get a 503 at once; a new
// connection that stays silent is reclaimed only after silentNewGrace.
func TestGlobalCapSheds(t *testing.T) {
	lim := testLimits()
	lim.MaxConnections = 16
	s := startServer(t, lim)
	for i := 0; i < 16; i++ {
		c := s.dialFrom(t, "127.0.0.1")
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n") // busy: headers under way
	}
	waitMetric(t, s, "test_connections_open", 16)
	c := s.dialFrom(t, "127.0.0.1")
	start := time.Now()
	res, body := roundTrip(t, c, bufio.NewReader(c), get(2))
	if res.StatusCode != 503 || res.Header.Get("Retry-After") != shedRetryAfter || !res.Close ||
		body != "server has too many connections (max_connections 16); retry later\n" {
		t.Fatalf("over the cap: %d %v %q", res.StatusCode, res.Header, body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the 503 took %v", d)
	}
	if n := s.metric(t, "test_connections_shed_total", "reason", "max_connections"); n != 1 {
		t.Fatalf("shed_total %v", n)
	}

	// Silent new connections: not reclaimed before the grace, then they are.
	s2 := startServer(t, lim)
	for i := 0; i < 16; i++ {
		s2.dialFrom(t, "127.0.0.1")
	}
	waitMetric(t, s2, "test_connections_open", 16)
	c = s2.dialFrom(t, "127.0.0.1")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 503 {
		t.Fatalf("silent connections younger than the grace were reclaimed: %d", res.StatusCode)
	}
	time.Sleep(silentNewGrace + 100*time.Millisecond)
	c = s2.dialFrom(t, "127.0.0.1")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
		t.Fatalf("after the grace: %d", res.StatusCode)
	}
}

func TestPerClientCap(t *testing.T) {
	lim := testLimits()
	lim.MaxConnectionsPerClient = 3
	lim.Exempt = []netip.Prefix{netip.MustParsePrefix("127.0.0.9/32")}
	s := startServer(t, lim)
	for i := 0; i < 3; i++ {
		c := s.dialFrom(t, "127.0.0.2")
		io.WriteString(c, "GET / HTTP/1.1\r\n") // busy
	}
	waitMetric(t, s, "test_connections_open", 3)
	c := s.dialFrom(t, "127.0.0.2")
	res, body := roundTrip(t, c, bufio.NewReader(c), get(2))
	if res.StatusCode != 503 || body != "too many connections from your address (max_connections_per_client 3); retry later\n" {
		t.Fatalf("4th connection of one client: %d %q", res.StatusCode, body)
	}
	if n := s.metric(t, "test_connections_shed_total", "reason", "max_connections_per_client"); n != 1 {
		t.Fatalf("shed_total %v", n)
	}
	// Another client is served; an exempt one (a trusted proxy) is not capped.
	for _, ip := range []string{"127.0.0.3", "127.0.0.9", "127.0.0.9", "127.0.0.9", "127.0.0.9"} {
		c := s.dialFrom(t, ip)
		io.WriteString(c, "GET / HTTP/1.1\r\n")
		if ip == "127.0.0.3" {
			io.WriteString(c, "Host: t\r\n\r\n")
			if res, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || res.StatusCode != 200 {
				t.Fatalf("other client: %v %v", res, err)
			}
		}
	}
	c = s.dialFrom(t, "127.0.0.9")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
		t.Fatalf("5th connection of an exempt address: %d", res.StatusCode)
	}
	// A client at its cap gives up its own idle connections first.
	var idle []net.Conn
	for i := 0; i < 3; i++ {
		c := s.dialFrom(t, "127.0.0.4")
		if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
			t.Fatal(res.StatusCode)
		}
		idle = append(idle, c)
	}
	c = s.dialFrom(t, "127.0.0.4")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
		t.Fatalf("4th connection with 3 idle: %d", res.StatusCode)
	}
	idle[0].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("the client's oldest idle connection is still open")
	}
}

func waitMetric(t *testing.T, s *testServer, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.metric(t, name) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s stayed %v, want %v", name, s.metric(t, name), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flakyListener fails Accept with EMFILE n times, then accepts.
type flakyListener struct {
	net.Listener
	mu sync.Mutex
	n  int
}

func (f *flakyListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	if f.n > 0 {
		f.n--
		f.mu.Unlock()
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: syscall.EMFILE}
	}
	f.mu.Unlock()
	return f.Listener.Accept()
}

// Failing accepts are retried inside the listener and logged once, not
// once per failure (net/http would log every one).
func TestAcceptErrorsNotFlooding(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveOn(t, &flakyListener{Listener: ln, n: 6}, testLimits())
	c := s.dialFrom(t, "127.0.0.1")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
		t.Fatalf("after accept errors: %d", res.StatusCode)
	}
	if n := s.metric(t, "test_accept_errors_total"); n != 6 {
		t.Fatalf("accept_errors_total %v, want 6", n)
	}
	logs := s.logs.String()
	if strings.Count(logs, "accept failed") != 1 || !strings.Contains(logs, "too many open files") || strings.Contains(logs, "http: Accept error") {
		t.Fatalf("want one rate-limited log line:\n%s", logs)
	}
}

func TestNewServerRefusesMissingLimits(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	h := http.NotFoundHandler()
	for _, lim := range []Limits{{}, {MaxHeaderBytes: 1, MaxHeaderFields: 1}, {MaxHeaderBytes: 1, MaxHeaderFields: 1, ReadHeaderTimeout: 1, IdleTimeout: 1, MaxConnections: -1}} {
		if _, err := NewServer(Options{Handler: h, Logger: log, Registry: prometheus.NewRegistry(), Limits: lim}); err == nil {
			t.Errorf("NewServer accepted %+v", lim)
		}
	}
}

func TestFitToFDLimit(t *testing.T) {
	limit := fdLimit()
	if limit <= 0 {
		t.Skip("no RLIMIT_NOFILE here")
	}
	log := slog.New(slog.DiscardHandler)
	if got := fitToFDLimit(limit*2, log); got != limit-fdReserve(limit) {
		t.Errorf("fitToFDLimit(%d) = %d with nofile %d", limit*2, got, limit)
	}
	if got := fitToFDLimit(16, log); got != 16 {
		t.Errorf("fitToFDLimit(16) = %d", got)
	}
	if got := fitToFDLimit(0, log); got != limit-fdReserve(limit) {
		t.Errorf("fitToFDLimit(0) = %d", got)
	}
}

// With a per-client cap of 1, each new connection replaces the client's
// idle one, and the counts stay right as clients come and go.
func TestPerClientCapOne(t *testing.T) {
	lim := testLimits()
	lim.MaxConnectionsPerClient = 1
	s := startServer(t, lim)
	var last net.Conn
	for i := 0; i < 3; i++ {
		last = s.dialFrom(t, "127.0.0.5")
		if res, _ := roundTrip(t, last, bufio.NewReader(last), get(2)); res.StatusCode != 200 {
			t.Fatalf("connection %d: %d", i, res.StatusCode)
		}
		waitMetric(t, s, "test_connections_open", 1)
		// The client reads the answer before the server marks the
		// connection idle; only an idle one may be replaced.
		waitMetric(t, s, "test_connections_idle", 1)
	}
	io.WriteString(last, "GET / HTTP/1.1\r\n") // busy
	time.Sleep(50 * time.Millisecond)
	c := s.dialFrom(t, "127.0.0.5")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 503 {
		t.Fatalf("second connection while the first is busy: %d", res.StatusCode)
	}
	last.Close()
	waitMetric(t, s, "test_connections_open", 0)
	waitMetric(t, s, "test_connections_idle", 0)
	c = s.dialFrom(t, "127.0.0.5")
	if res, _ := roundTrip(t, c, bufio.NewReader(c), get(2)); res.StatusCode != 200 {
		t.Fatalf("after the client's connections closed: %d", res.StatusCode)
	}
}
