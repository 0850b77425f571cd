package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// relay is a TCP relay between keeptunnel and sshd whose Freeze makes the
// path through it half-dead: the connections stay open but nothing passes
// any more, as when a NAT mapping silently expires. Connections made
// after a freeze pass normally.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []*relayConn
	done   chan struct{}
}

type relayConn struct {
	a, b   net.Conn
	frozen chan struct{}
}

func startRelay(t *testing.T, target string) *relay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target, done: make(chan struct{})}
	go func() {
		for {
			a, err := ln.Accept()
			if err != nil {
				return
			}
			b, err := net.Dial("tcp", target)
			if err != nil {
				a.Close()
				continue
			}
			rc := &relayConn{a: a, b: b, frozen: make(chan struct{})}
			r.mu.Lock()
			r.conns = append(r.conns, rc)
			r.mu.Unlock()
			go r.pump(rc, a, b)
			go r.pump(rc, b, a)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(r.done)
		r.mu.Lock()
		for _, c := range r.conns {
			c.a.Close()
			c.b.Close()
		}
		r.mu.Unlock()
	})
	return r
}

func (r *relay) Addr() string { return r.ln.Addr().String() }

// pump copies src to dst until the connection ends; once frozen it drops
// what it reads and never closes dst (until the test ends).
func (r *relay) pump(rc *relayConn, src, dst net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-rc.frozen:
			<-r.done
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			select {
			case <-rc.frozen:
				<-r.done
			default:
				src.Close()
				dst.Close()
			}
			return
		}
	}
}

// Freeze stops every connection open now.
func (r *relay) Freeze() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.conns {
		select {
		case <-c.frozen:
		default:
			close(c.frozen)
		}
	}
}

// tunnelSite is one keepstore behind keeptunnel, and keepproxy using it
// through the socket sshd listens on.
type tunnelSite struct {
	t         *testing.T
	sshd      *testenv.SSHD
	store     *testenv.Store
	relay     *relay
	socket    string
	proxyURL  string
	proxy     *testenv.Proc
	tunnel    *testenv.Proc
	healthURL string
	cfgPath   string
}

// tunnelConfig is a keeptunnel config dialling server with known_hosts kh.
func tunnelConfig(t *testing.T, s *testenv.SSHD, server, kh, identity, forwards, extra string) (path, healthURL string) {
	t.Helper()
	health := testenv.FreeAddr(t)
	cfg := fmt.Sprintf("server: %s\nuser: %s\nidentity_file: %s\nknown_hosts_file: %s\nforwards:\n%s"+
		"keepalive_interval: 2s\nkeepalive_count: 2\nbackoff_reset: 1s\nhealth_listen: %s\nlog_level: debug\n%s",
		server, s.User, identity, kh, forwards, health, extra)
	return testenv.WriteFile(t, t.TempDir(), "keeptunnel.yml", cfg), "http://" + health + "/_health/ping"
}

// knownHostsFor pins the sshd's host key for addr (the relay's address
// when keeptunnel dials through it).
func knownHostsFor(t *testing.T, s *testenv.SSHD, addr string) string {
	t.Helper()
	b, err := os.ReadFile(s.HostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	_, port, _ := net.SplitHostPort(addr)
	return testenv.WriteFile(t, t.TempDir(), "known_hosts", fmt.Sprintf("[127.0.0.1]:%s %s %s\n", port, f[0], f[1]))
}

func startTunnelSite(t *testing.T) *tunnelSite {
	t.Helper()
	s := &tunnelSite{t: t}
	s.sshd = testenv.StartSSHD(t, testenv.SSHDOptions{})
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, NoProxy: true})
	s.store = c.Stores[0]
	s.relay = startRelay(t, s.sshd.Addr)
	s.socket = s.sshd.Socket("ks.sock")
	s.cfgPath, s.healthURL = tunnelConfig(t, s.sshd, s.relay.Addr(), knownHostsFor(t, s.sshd, s.relay.Addr()), s.sshd.ClientKey,
		fmt.Sprintf("  - name: ks\n    remote: %s\n    local: %s\n", s.socket, s.store.Addr), "")
	s.startTunnel()
	s.waitHealthy(20 * time.Second)

	dir := t.TempDir()
	tokens := testenv.WriteFile(t, dir, "tokens.yml", fmt.Sprintf("tokens:\n  - name: rw\n    token: %s\n    scopes: [read, write]\n", testenv.TokenRW))
	addr := testenv.FreeAddr(t)
	s.proxyURL = "http://" + addr
	cfg := testenv.WriteFile(t, dir, "keepproxy.yml", fmt.Sprintf("listen: %s\ntoken_file: %s\ndefault_replicas: 1\nlog_level: debug\nstores:\n  - url: http+unix://%s\n    uuid: zzzzz-bi6l4-tunnel000000001\n", addr, tokens, s.socket))
	s.proxy = testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", cfg})
	testenv.WaitHTTP(t, s.proxyURL+"/_health/ping", 0, s.proxy)
	return s
}

func (s *tunnelSite) startTunnel() {
	s.tunnel = testenv.Start(s.t, testenv.Build(s.t, "keeptunnel"), []string{"-config", s.cfgPath})
}

type tunnelHealth struct {
	Health        string `json:"health"`
	Connected     bool   `json:"connected"`
	Sessions      int    `json:"sessions"`
	LastErrorKind string `json:"last_error_kind"`
	LastError     string `json:"last_error"`
}

func getTunnelHealth(url string) (tunnelHealth, int) {
	var h tunnelHealth
	resp, err := (&http.Client{Timeout: time.Second}).Get(url)
	if err != nil {
		return h, 0
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&h)
	return h, resp.StatusCode
}

func (s *tunnelSite) waitHealthy(within time.Duration) tunnelHealth {
	s.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if s.tunnel.Exited() {
			s.t.Fatalf("keeptunnel exited:\n%s", s.tunnel.Output())
		}
		if h, code := getTunnelHealth(s.healthURL); code == 200 && h.Connected {
			return h
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.t.Fatalf("keeptunnel not connected within %v\nkeeptunnel:\n%s\nsshd:\n%s", within, s.tunnel.Output(), s.sshd.Log())
	return tunnelHealth{}
}

var shortClient = &http.Client{Timeout: 1500 * time.Millisecond}

func (s *tunnelSite) put(body []byte) (int, string) {
	req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/%x", s.proxyURL, md5.Sum(body)), bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	resp, err := shortClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func (s *tunnelSite) get(loc string) (int, []byte) {
	req, _ := http.NewRequest("GET", s.proxyURL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	resp, err := shortClient.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// untilGET polls GET loc through keepproxy (each attempt bounded by
// shortClient's timeout, as a client that keeps probing) until it returns
// want, and reports how long that took from t0.
func (s *tunnelSite) untilGET(loc string, want []byte, t0 time.Time, limit time.Duration) time.Duration {
	s.t.Helper()
	for time.Since(t0) < limit {
		if code, b := s.get(loc); code == 200 && bytes.Equal(b, want) {
			return time.Since(t0)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.t.Fatalf("GET through the tunnel did not succeed within %v\nkeeptunnel:\n%s\nkeepproxy:\n%s", limit, lastLines(s.tunnel.Output(), 40), lastLines(s.proxy.Output(), 20))
	return 0
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

func tunnelMetric(t *testing.T, healthURL, name string) string {
	resp, err := http.Get(strings.TrimSuffix(healthURL, "/_health/ping") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1])
}

func medianDuration(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// The whole path: keepproxy -> unix socket on the sshd host -> SSH ->
// keeptunnel -> keepstore; then the faults it must heal from.
func TestTunnelEndToEnd(t *testing.T) {
	t.Parallel()
	s := startTunnelSite(t)
	body := []byte("a block from behind NAT\n")
	code, loc := s.put(body)
	if code != 200 {
		t.Fatalf("PUT through the tunnel: %d %s\n%s", code, loc, s.proxy.Output())
	}
	if !s.store.Has(fmt.Sprintf("%x", md5.Sum(body))) {
		t.Fatal("the block did not reach the keepstore behind the tunnel")
	}
	if code, b := s.get(loc); code != 200 || !bytes.Equal(b, body) {
		t.Fatalf("GET through the tunnel: %d %q", code, b)
	}
	if v := tunnelMetric(t, s.healthURL, `keeptunnel_forward_bytes_total{direction="to_store",forward="ks"}`); v == "" || v == "0" {
		t.Errorf("bytes per forward not counted: %q", v)
	}

	t.Run("local keepstore down", func(t *testing.T) {
		s.store.Kill()
		t0 := time.Now()
		code, _ := s.get(loc)
		took := time.Since(t0)
		if code != 502 || took > 3*time.Second {
			t.Fatalf("GET with the keepstore down: %d after %v, want a quick 502", code, took)
		}
		if h, c := getTunnelHealth(s.healthURL); c != 200 || !h.Connected || h.Sessions != 1 {
			t.Fatalf("the tunnel did not stay up while the keepstore was down: %d %+v", c, h)
		}
		t.Logf("GET with the local keepstore down: 502 in %v; tunnel stayed up", took.Round(time.Millisecond))
		s.store.Start()
		s.untilGET(loc, body, time.Now(), 5*time.Second)
	})

	t.Run("frozen path", func(t *testing.T) {
		var times []time.Duration
		for trial := 0; trial < 10; trial++ {
			before := s.waitHealthy(10 * time.Second).Sessions
			// The back-off starts over after a session that stayed up
			// backoff_reset (1 s in this config).
			time.Sleep(1100 * time.Millisecond)
			t0 := time.Now()
			s.relay.Freeze()
			took := s.untilGET(loc, body, t0, 30*time.Second)
			times = append(times, took)
			if h, _ := getTunnelHealth(s.healthURL); h.Sessions <= before {
				t.Fatalf("trial %d: GET succeeded but no new session (%+v)", trial, h)
			}
		}
		within := 0
		for _, d := range times {
			if d <= 6*time.Second {
				within++
			}
		}
		t.Logf("frozen path (keepalive 2s x 2): GET through keepproxy succeeded again after %v; median %v; %d of %d within interval x count + 2 s = 6 s",
			times, medianDuration(times).Round(time.Millisecond), within, len(times))
		if !strings.Contains(s.tunnel.Output(), `"kind":"keepalive"`) {
			t.Fatal("keeptunnel did not report the keepalive timeout")
		}
	})

	t.Run("sshd restarted", func(t *testing.T) {
		s.waitHealthy(10 * time.Second)
		time.Sleep(1100 * time.Millisecond)
		s.sshd.Kill()
		time.Sleep(time.Second)
		if code, _ := s.get(loc); code == 200 {
			t.Fatal("GET succeeded with sshd down")
		}
		s.sshd.Start()
		t0 := time.Now()
		took := s.untilGET(loc, body, t0, 15*time.Second)
		t.Logf("sshd killed (with its sessions) for 1 s and started again: GET succeeded %v after it listened", took.Round(time.Millisecond))
	})

	t.Run("SIGTERM", func(t *testing.T) {
		s.waitHealthy(10 * time.Second)
		t0 := time.Now()
		s.tunnel.Signal(syscall.SIGTERM)
		err, ok := s.tunnel.Wait(10 * time.Second)
		if !ok || err != nil {
			t.Fatalf("keeptunnel after SIGTERM: exited=%v err=%v\n%s", ok, err, lastLines(s.tunnel.Output(), 10))
		}
		t.Logf("SIGTERM: exit 0 after %v", time.Since(t0).Round(time.Millisecond))
		if code, _ := s.get(loc); code != 502 {
			t.Fatalf("GET with keeptunnel stopped: %d, want 502", code)
		}
	})
}

// runTunnelFor starts keeptunnel with cfg, waits for the outcome of its
// first attempt (connected, or an error), lets it go on for d more and
// returns its health then (the process is killed at cleanup).
func runTunnelFor(t *testing.T, cfg, healthURL string, d time.Duration, env ...string) (*testenv.Proc, tunnelHealth, int) {
	t.Helper()
	p := testenv.Start(t, testenv.Build(t, "keeptunnel"), []string{"-config", cfg}, env...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p.Exited() {
			t.Fatalf("keeptunnel exited:\n%s", p.Output())
		}
		if h, code := getTunnelHealth(healthURL); code != 0 && (h.Connected || h.LastErrorKind != "") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outcome of keeptunnel's first attempt within 20 s:\n%s", p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(d)
	h, code := getTunnelHealth(healthURL)
	return p, h, code
}

// Refusals and faults: none may establish a session; each is reported by
// kind in the health endpoint and explained in the log.
func TestTunnelFaults(t *testing.T) {
	t.Parallel()
	store := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, NoProxy: true}).Stores[0]
	ksForward := func(s *testenv.SSHD) string {
		return fmt.Sprintf("  - name: ks\n    remote: %s\n    local: %s\n", s.Socket("ks.sock"), store.Addr)
	}
	accepted := func(s *testenv.SSHD) int { return strings.Count(s.Log(), "Accepted publickey") }

	t.Run("host key mismatch", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		_, port, _ := net.SplitHostPort(s.Addr)
		// Pin another key (the client's) as the server's.
		kh := testenv.WriteFile(t, t.TempDir(), "known_hosts", fmt.Sprintf("[127.0.0.1]:%s %s\n", port, s.ClientPub))
		cfg, hu := tunnelConfig(t, s, s.Addr, kh, s.ClientKey, ksForward(s), "")
		p, h, code := runTunnelFor(t, cfg, hu, 2*time.Second)
		if code != 503 || h.Connected || h.Sessions != 0 || h.LastErrorKind != "host_key_mismatch" || accepted(s) != 0 {
			t.Fatalf("health %d %+v, sshd accepted %d\n%s", code, h, accepted(s), p.Output())
		}
		if n := s.Sessions(); n != 1 {
			t.Fatalf("%d connections to sshd in 2 s after the first, want 1 (host key refusals are retried once a minute)", n)
		}
		if !p.Contains("HOST KEY MISMATCH") || !p.Contains("replace the line in "+kh) {
			t.Fatalf("the log does not say what to do:\n%s", p.Output())
		}
	})
	t.Run("unknown host key", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		b, _ := os.ReadFile(s.HostKey + ".pub")
		f := strings.Fields(string(b))
		kh := testenv.WriteFile(t, t.TempDir(), "known_hosts", fmt.Sprintf("[127.0.0.1]:1 %s %s\n", f[0], f[1]))
		cfg, hu := tunnelConfig(t, s, s.Addr, kh, s.ClientKey, ksForward(s), "")
		p, h, code := runTunnelFor(t, cfg, hu, 2*time.Second)
		if code != 503 || h.Sessions != 0 || h.LastErrorKind != "host_key_unknown" || accepted(s) != 0 || s.Sessions() != 1 {
			t.Fatalf("health %d %+v, sshd accepted %d of %d\n%s", code, h, accepted(s), s.Sessions(), p.Output())
		}
		_, port, _ := net.SplitHostPort(s.Addr)
		if !p.Contains("add this line to " + kh + ": [127.0.0.1]:" + port + " ssh-ed25519 " + f[1]) {
			t.Fatalf("the log does not give the line to add:\n%s", p.Output())
		}
	})
	t.Run("identity readable by others", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		key, _ := os.ReadFile(s.ClientKey)
		for _, mode := range []os.FileMode{0o644, 0o640} {
			p := filepath.Join(t.TempDir(), "id")
			os.WriteFile(p, key, mode)
			os.Chmod(p, mode)
			cfg, _ := tunnelConfig(t, s, s.Addr, s.KnownHosts, p, ksForward(s), "")
			proc := testenv.Start(t, testenv.Build(t, "keeptunnel"), []string{"-config", cfg})
			err, done := proc.Wait(10 * time.Second)
			if !done || err == nil || !proc.Contains("chmod 600 "+p) || s.Sessions() != 0 {
				t.Fatalf("mode %04o: exited=%v err=%v sshd connections %d\n%s", mode, done, err, s.Sessions(), proc.Output())
			}
		}
	})
	t.Run("key not authorized", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		// The host key is a valid ed25519 key the server does not know as a
		// client key.
		other := filepath.Join(t.TempDir(), "id")
		key, _ := os.ReadFile(s.HostKey)
		os.WriteFile(other, key, 0o600)
		cfg, hu := tunnelConfig(t, s, s.Addr, s.KnownHosts, other, ksForward(s), "")
		p, h, code := runTunnelFor(t, cfg, hu, 500*time.Millisecond)
		if code != 503 || h.Sessions != 0 || h.LastErrorKind != "auth" || !p.Contains("authorized_keys") {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
	})
	t.Run("forward refused", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		// The shipped block has PermitListen none: a TCP forward is refused,
		// and with it the whole session, the granted unix forward included.
		forwards := ksForward(s) + fmt.Sprintf("  - remote: 127.0.0.1:%s\n    local: %s\n", strings.Split(testenv.FreeAddr(t), ":")[1], store.Addr)
		cfg, hu := tunnelConfig(t, s, s.Addr, s.KnownHosts, s.ClientKey, forwards, "")
		p, h, code := runTunnelFor(t, cfg, hu, time.Second)
		if code != 503 || h.Sessions != 0 || h.LastErrorKind != "forward_denied" || !p.Contains("refused to listen on TCP") {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
		if c, err := net.DialTimeout("unix", s.Socket("ks.sock"), time.Second); err == nil {
			c.Close()
			// The socket may exist for a moment while sshd tears the session
			// down; it must not stay served.
			time.Sleep(500 * time.Millisecond)
			if c, err := net.Dial("unix", s.Socket("ks.sock")); err == nil {
				c.Close()
				t.Fatal("the granted forward of a torn-down session is still served")
			}
		}
		if os.Geteuid() == 0 {
			// A socket directory the tunnel account may not write to.
			p.Kill()
			cfg, hu := tunnelConfig(t, s, s.Addr, s.KnownHosts, s.ClientKey, fmt.Sprintf("  - remote: %s/ks.sock\n    local: %s\n", s.Dir, store.Addr), "")
			p, h, code := runTunnelFor(t, cfg, hu, 500*time.Millisecond)
			if code != 503 || h.LastErrorKind != "forward_denied" || !p.Contains("refused to listen on unix socket") {
				t.Fatalf("unwritable socket directory: health %d %+v\n%s", code, h, p.Output())
			}
		}
	})
	t.Run("tcp forward granted by permitlisten", func(t *testing.T) {
		t.Parallel()
		listen := testenv.FreeAddr(t)
		s := testenv.StartSSHD(t, testenv.SSHDOptions{KeyOptions: `restrict,port-forwarding,permitlisten="` + listen + `"`, Match: []string{"PermitListen " + listen}})
		cfg, hu := tunnelConfig(t, s, s.Addr, s.KnownHosts, s.ClientKey, fmt.Sprintf("  - remote: %s\n    local: %s\n", listen, store.Addr), "")
		p, h, code := runTunnelFor(t, cfg, hu, 200*time.Millisecond)
		if code != 200 || !h.Connected {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
		resp, err := http.Get("http://" + listen + "/_health/ping")
		if err != nil {
			t.Fatalf("keepstore through the TCP forward: %v", err)
		}
		resp.Body.Close()
	})
	t.Run("tcp forward after a frozen path", func(t *testing.T) {
		t.Parallel()
		// The documented caveat of TCP forwards: the dead session still
		// holds the port on the server, so the new session is refused it.
		listen := testenv.FreeAddr(t)
		s := testenv.StartSSHD(t, testenv.SSHDOptions{KeyOptions: `restrict,port-forwarding,permitlisten="` + listen + `"`, Match: []string{"PermitListen " + listen}})
		r := startRelay(t, s.Addr)
		cfg, hu := tunnelConfig(t, s, r.Addr(), knownHostsFor(t, s, r.Addr()), s.ClientKey, fmt.Sprintf("  - remote: %s\n    local: %s\n", listen, store.Addr), "")
		p, h, code := runTunnelFor(t, cfg, hu, 0)
		if code != 200 || !h.Connected {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
		stop := make(chan struct{})
		defer close(stop)
		go func() { // something keeps connecting to the port, as keepproxy would
			c := &http.Client{Timeout: 500 * time.Millisecond}
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				if resp, err := c.Get("http://" + listen + "/_health/ping"); err == nil {
					resp.Body.Close()
				}
			}
		}()
		t0 := time.Now()
		r.Freeze()
		for !p.Contains(`"kind":"forward_denied"`) {
			if time.Since(t0) > 20*time.Second {
				t.Fatalf("no forward_denied within 20 s of the freeze:\n%s", p.Output())
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("TCP forward: %v after the path froze, the new session was refused the port (the dead session still holds it)", time.Since(t0).Round(time.Millisecond))
	})
	t.Run("SIGTERM drains open connections", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		// A local service that answers slowly: 20 lines over 1 s.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		slow := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < 20; i++ {
				fmt.Fprintf(w, "line %d\n", i)
				w.(http.Flusher).Flush()
				time.Sleep(50 * time.Millisecond)
			}
		})}
		go slow.Serve(ln)
		t.Cleanup(func() { slow.Close() })
		sock := s.Socket("slow.sock")
		cfg, hu := tunnelConfig(t, s, s.Addr, s.KnownHosts, s.ClientKey, fmt.Sprintf("  - remote: %s\n    local: %s\n", sock, ln.Addr()), "")
		p, h, code := runTunnelFor(t, cfg, hu, 0)
		if code != 200 || !h.Connected {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
		viaSocket := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}, DisableKeepAlives: true}}
		resp, err := viaSocket.Get("http://slow/")
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Now()
		p.Signal(syscall.SIGTERM)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.HasSuffix(body, []byte("line 19\n")) {
			t.Fatalf("the open connection was cut at SIGTERM: %v, %q\n%s", err, body, p.Output())
		}
		if err, done := p.Wait(10 * time.Second); !done || err != nil {
			t.Fatalf("exit after SIGTERM: exited=%v %v\n%s", done, err, p.Output())
		}
		t.Logf("SIGTERM with a response in flight: it completed, then exit 0 after %v", time.Since(t0).Round(time.Millisecond))
		if _, err := viaSocket.Get("http://slow/"); err == nil {
			t.Fatal("the forward still answers after keeptunnel exited")
		}
	})
	t.Run("server unreachable", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		nowhere := testenv.FreeAddr(t)
		cfg, hu := tunnelConfig(t, s, nowhere, s.KnownHosts, s.ClientKey, ksForward(s), "")
		p, h, code := runTunnelFor(t, cfg, hu, 3*time.Second)
		attempts := strings.Count(p.Output(), "cannot establish the tunnel")
		if code != 503 || h.LastErrorKind != "refused" || attempts < 2 || attempts > 6 {
			t.Fatalf("health %d %+v, %d attempts in about 3 s (want a few, backing off)\n%s", code, h, attempts, p.Output())
		}
	})
	t.Run("server silent", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		// Accepts TCP connections and never says a word.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var held []net.Conn
		var mu sync.Mutex
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			ln.Close()
			mu.Lock()
			for _, c := range held {
				c.Close()
			}
			mu.Unlock()
		})
		cfg, hu := tunnelConfig(t, s, ln.Addr().String(), s.KnownHosts, s.ClientKey, ksForward(s), "handshake_timeout: 1s\n")
		p, h, code := runTunnelFor(t, cfg, hu, 200*time.Millisecond)
		if code != 503 || h.LastErrorKind != "handshake_timeout" {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
	})
	t.Run("DNS failure", func(t *testing.T) {
		t.Parallel()
		s := testenv.StartSSHD(t, testenv.SSHDOptions{})
		// Not a valid domain name: Go's resolver fails it with a
		// *net.DNSError without sending a query off the machine.
		cfg, hu := tunnelConfig(t, s, "keepgate..invalid:22", s.KnownHosts, s.ClientKey, ksForward(s), "")
		p, h, code := runTunnelFor(t, cfg, hu, 200*time.Millisecond, "GODEBUG=netdns=go")
		if code != 503 || h.LastErrorKind != "dns" || !p.Contains("cannot resolve the server name") {
			t.Fatalf("health %d %+v\n%s", code, h, p.Output())
		}
	})
}
