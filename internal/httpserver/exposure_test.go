package httpserver_test

// Exposure tests: the listener limits of this package, measured on the
// real keepproxy and keepstore binaries from outside, as an attacker on
// the internet (or a runaway client on the LAN) would see them.
//
// The configurations written here use only keys older builds know too, so
// that a baseline can be measured: KEEPGATE_EXPOSURE_BINDIR=/dir runs the
// keepproxy and keepstore binaries found there instead of building them.

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

const (
	exposureToken = "exposure-test-token-0123456789"
	exposureKey   = "exposuresigningkey0123456789abcdefghijklmnopqrstuvwxyz"
)

func exposureBinary(t *testing.T, name string) string {
	if dir := os.Getenv("KEEPGATE_EXPOSURE_BINDIR"); dir != "" {
		return filepath.Join(dir, name)
	}
	return testenv.Build(t, name)
}

// exposed is a started service.
type exposed struct {
	proc *testenv.Proc
	addr string
	url  string
}

// startExposed runs the named binary with cfg (a format string whose %s is
// the listen address), with RLIMIT_NOFILE set to nofile when positive.
func startExposed(t *testing.T, name, cfg string, nofile int) *exposed {
	t.Helper()
	addr := testenv.FreeAddr(t)
	path := testenv.WriteFile(t, t.TempDir(), name+".yml", fmt.Sprintf(cfg, addr))
	bin, args := exposureBinary(t, name), []string{"-config", path}
	if nofile > 0 {
		args = append([]string{"-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, nofile), bin}, args...)
		bin = "/bin/sh"
	}
	e := &exposed{proc: testenv.Start(t, bin, args), addr: addr, url: "http://" + addr}
	testenv.WaitHTTP(t, e.url+"/_health/ping", 0, e.proc)
	return e
}

// startStore starts a keepstore with one directory volume and signing.
func startStore(t *testing.T, nofile int) *exposed {
	dir := t.TempDir()
	key := testenv.WriteFile(t, dir, "key", exposureKey)
	os.Mkdir(filepath.Join(dir, "vol"), 0o700)
	cfg := "listen: %s\nlog_level: warn\nblob_signing_key_file: " + key +
		"\nvolumes:\n  - driver: Directory\n    directory:\n      root: " + filepath.Join(dir, "vol") + "\n      reserve: -1\n"
	return startExposed(t, "keepstore", cfg, nofile)
}

// startProxy starts a keepproxy in front of store (or of a store address
// nothing listens on).
func startProxy(t *testing.T, storeURL string, nofile int) *exposed {
	tokens := testenv.WriteFile(t, t.TempDir(), "tokens.yml",
		"tokens:\n  - name: t\n    token: "+exposureToken+"\n    scopes: [read, write]\n")
	cfg := "listen: %s\nlog_level: warn\ndefault_replicas: 1\ntoken_file: " + tokens + "\nstores:\n  - url: " + storeURL + "\n"
	return startExposed(t, "keepproxy", cfg, nofile)
}

// procStatus returns a field of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(t *testing.T, p *testenv.Proc, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, p.Cmd.Process.Pid)
	return 0
}

// headerFlood has workers connections at a time, each sending the start
// of a request and then total bytes of header lines made by line(i),
// never the blank line that would end them; a connection is held until
// the server ends it, then opened again, until the deadline.
func headerFlood(addr string, workers, total int, line func(i int) string, deadline time.Time) (conns int64) {
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
					continue
				}
				n.Add(1)
				c.SetDeadline(deadline)
				var buf bytes.Buffer
				buf.WriteString("GET / HTTP/1.1\r\nHost: keep\r\n")
				sent := 0
				for i := 0; sent < total; i++ {
					buf.WriteString(line(i))
					if buf.Len() >= 16<<10 {
						k, err := c.Write(buf.Bytes())
						sent += k
						buf.Reset()
						if err != nil {
							break
						}
					}
				}
				io.Copy(io.Discard, c) // until the server answers and closes, or the deadline
				c.Close()
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

// Under 500 concurrent unauthenticated connections each trying to send
// 700 KB of headers — many small fields on half of them, few long ones on
// the other half — keepproxy's memory stays within 64 MiB of idle. With
// net/http's defaults (1 MiB of headers, no field cap) it grew by
// gigabytes.
func TestHeaderFloodMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts keepproxy and floods it for seconds")
	}
	p := startProxy(t, "http://127.0.0.1:9", 0)
	for i := 0; i < 20; i++ { // warm up the ordinary paths
		http.Get(p.url + "/_health/ping")
	}
	time.Sleep(300 * time.Millisecond)
	idle := procStatus(t, p.proc, "VmRSS")
	start := procStatus(t, p.proc, "VmHWM")

	// Three kinds of attackers, 500 connections in all: tiny fields (the
	// most memory per byte: a map entry each), 700 KB of them; tiny fields
	// but only 30 KB, under max_header_bytes, then waiting (held until
	// request_header_timeout unless the field cap ends them); and 8 KB
	// fields, 700 KB of them.
	tiny := func(i int) string { return strconv.FormatInt(int64(i), 36) + ":1\r\n" }
	long := func(i int) string { return fmt.Sprintf("X-L%d: %s\r\n", i, strings.Repeat("a", 8000)) }
	floods := []struct {
		name           string
		workers, bytes int
		line           func(int) string
		conns          int64
	}{{"tiny fields, 700 KB", 170, 700_000, tiny, 0}, {"tiny fields, 30 KB and wait", 165, 30_000, tiny, 0}, {"8 KB fields, 700 KB", 165, 700_000, long, 0}}
	end := time.Now().Add(6 * time.Second)
	var wg sync.WaitGroup
	for i := range floods {
		f := &floods[i]
		wg.Add(1)
		go func() { defer wg.Done(); f.conns = headerFlood(p.addr, f.workers, f.bytes, f.line, end) }()
	}
	wg.Wait()
	hwm := procStatus(t, p.proc, "VmHWM")
	time.Sleep(2 * time.Second)
	after := procStatus(t, p.proc, "VmRSS")
	growth := max(hwm, start) - idle
	var counts []string
	for _, f := range floods {
		counts = append(counts, fmt.Sprintf("%s: %d connections", f.name, f.conns))
	}
	t.Logf("keepproxy RSS idle %.1f MiB; peak (VmHWM) %.1f MiB = idle + %.1f MiB; 2 s after the flood %.1f MiB; %s",
		mib(idle), mib(hwm), mib(growth), mib(after), strings.Join(counts, "; "))
	if growth > 64<<20 {
		t.Fatalf("keepproxy's RSS grew by %.1f MiB under the header flood (limit 64 MiB above idle)", mib(growth))
	}
	for _, f := range floods {
		if f.conns < int64(f.workers) {
			t.Fatalf("the flood made only %d connections for %s", f.conns, f.name)
		}
	}
	if p.proc.Exited() {
		t.Fatalf("keepproxy died:\n%s", p.proc.Output())
	}
	if res, err := http.Get(p.url + "/_health/ping"); err != nil {
		t.Fatalf("keepproxy after the flood: %v", err)
	} else {
		res.Body.Close()
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// idleConnTarget is the idle connections of the incident (20,000 against
// ulimit -n 20,000), or as many as this process's file-descriptor limit
// leaves room for.
func idleConnTarget(t *testing.T) int {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if r.Cur < r.Max { // Go raises the soft limit at start; make sure
		r.Cur = r.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r)
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r)
	}
	n := 20_000
	if fit := int(r.Cur) - 300; fit < n {
		t.Logf("RLIMIT_NOFILE of the test is %d: scaled to %d idle connections (the server's ulimit -n is set to the same number, as 20,000 was in the incident)", r.Cur, fit)
		n = fit
	}
	if n < 2000 {
		testenv.Missing(t, "RLIMIT_NOFILE %d is too small for this test (raise ulimit -n)", r.Cur)
	}
	return n
}

// openIdle opens n keep-alive connections to addr concurrently, each
// sending one "OPTIONS /" and reading the answer, and leaves them open
// (closed at cleanup). It returns how many got an answer.
func openIdle(t *testing.T, addr string, n int) int {
	t.Helper()
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var answered atomic.Int64
	next := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 200; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				c.SetDeadline(time.Now().Add(2 * time.Second))
				io.WriteString(c, "OPTIONS / HTTP/1.1\r\nHost: keep\r\n\r\n")
				if res, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					answered.Add(1)
				}
				c.SetDeadline(time.Time{})
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return int(answered.Load())
}

// timedGet GETs url with token on a new connection and reports how long
// the answer took; it fails the test unless it is 200 with want within 1 s.
func timedGet(t *testing.T, url, token string, want []byte) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	start := time.Now()
	res, err := client.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(res.Body)
		res.Body.Close()
	}
	d := time.Since(start)
	if err != nil {
		t.Fatalf("GET %s with idle connections open: %v after %v", url, err, d)
	}
	if res.StatusCode != 200 || !bytes.Equal(body, want) || d > time.Second {
		t.Fatalf("GET %s with idle connections open: %d %q after %v, want 200 within 1s", url, res.StatusCode, body, d)
	}
	return d
}

// put stores data at url with token and returns the locator.
func put(t *testing.T, url, token string, data []byte) string {
	t.Helper()
	sum := md5.Sum(data)
	req, _ := http.NewRequest("PUT", url+"/"+hex.EncodeToString(sum[:]), bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", res.StatusCode, b)
	}
	return strings.TrimSpace(string(b))
}

// With (about) 20,000 idle keep-alive connections open against keepproxy,
// whose ulimit -n is as small as in the incident, a new authenticated GET
// is answered within 1 s.
func TestIdleConnectionFloodKeepproxy(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	n := idleConnTarget(t)
	store := startStore(t, 0)
	p := startProxy(t, store.url, n)
	data := []byte("exposure test block\n")
	loc := put(t, p.url, exposureToken, data)

	start := time.Now()
	answered := openIdle(t, p.addr, n)
	opened := time.Since(start)
	d := timedGet(t, p.url+"/"+loc, exposureToken, data)
	t.Logf("keepproxy: %d connections opened in %v (%d answered); then a new authenticated GET took %v", n, opened.Round(time.Millisecond), answered, d)
	if strings.Contains(p.proc.Output(), "too many open files") {
		t.Errorf("keepproxy ran out of file descriptors:\n%.2000s", p.proc.Output())
	}
}

// The same against a keepstore's listener.
func TestIdleConnectionFloodKeepstore(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 20,000 connections")
	}
	n := idleConnTarget(t)
	s := startStore(t, n)
	data := []byte("exposure test block\n")
	loc := put(t, s.url, exposureToken, data)

	start := time.Now()
	answered := openIdle(t, s.addr, n)
	opened := time.Since(start)
	d := timedGet(t, s.url+"/"+loc, exposureToken, data)
	t.Logf("keepstore: %d connections opened in %v (%d answered); then a new authenticated GET took %v", n, opened.Round(time.Millisecond), answered, d)
	if strings.Contains(s.proc.Output(), "too many open files") {
		t.Errorf("keepstore ran out of file descriptors:\n%.2000s", s.proc.Output())
	}
}
