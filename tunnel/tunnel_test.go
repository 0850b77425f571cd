package tunnel

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second, ResetAfter: time.Minute}
	hi := func() float64 { return 0.999999 }
	lo := func() float64 { return 0 }
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}
	for i, w := range want {
		b.Rand = hi
		if i%2 == 1 {
			b.Rand = lo
		}
		d := b.Next()
		if d < w/2 || d > w {
			t.Fatalf("attempt %d: delay %v outside [%v, %v]", i, d, w/2, w)
		}
	}
	b.Healthy(59 * time.Second)
	if d := b.Next(); d < 15*time.Second {
		t.Fatalf("a session shorter than ResetAfter reset the back-off: %v", d)
	}
	b.Healthy(time.Minute)
	if d := b.Next(); d > 500*time.Millisecond {
		t.Fatalf("after a healthy minute: %v, want at most 500ms", d)
	}
}

func writeKey(t *testing.T, mode os.FileMode, passphrase string) string {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	var blk *pem.Block
	var err error
	if passphrase != "" {
		blk, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte(passphrase))
	} else {
		blk, err = ssh.MarshalPrivateKey(priv, "")
	}
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "id")
	os.WriteFile(p, pem.EncodeToMemory(blk), 0o600)
	os.Chmod(p, mode)
	return p
}

func TestLoadIdentity(t *testing.T) {
	if _, err := LoadIdentity(writeKey(t, 0o600, "")); err != nil {
		t.Fatalf("0600 key: %v", err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
		_, err := LoadIdentity(writeKey(t, mode, ""))
		if KindOf(err) != KindConfig || !strings.Contains(err.Error(), "chmod 600") {
			t.Errorf("mode %04o: %v", mode, err)
		}
	}
	if _, err := LoadIdentity(writeKey(t, 0o600, "secret")); err == nil || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("passphrase-protected key: %v", err)
	}
	if _, err := LoadIdentity(filepath.Join(t.TempDir(), "none")); KindOf(err) != KindConfig {
		t.Errorf("missing key: %v", err)
	}
}

// fakeClock advances by exactly what is waited for, at once: the
// supervisor's schedule runs in virtual time.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	c.mu.Unlock()
	return ch
}

// sshServer accepts connections with an SSH server handshake using
// hostKey and counts how many authenticated.
type sshServer struct {
	ln     net.Listener
	mu     sync.Mutex
	authed int
}

func startSSHServer(t *testing.T, hostKey ssh.Signer) *sshServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{ln: ln}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(hostKey)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				s.mu.Lock()
				s.authed++
				s.mu.Unlock()
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					nc.Reject(ssh.Prohibited, "no")
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return s
}

func newSigner(t *testing.T) ssh.Signer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An unknown or mismatched host key: no session, the log says what to do,
// and attempts are at least HostKeyRetry (1 minute by default) apart.
func TestHostKeyRefusalRetriedOncePerMinute(t *testing.T) {
	for _, mismatch := range []bool{false, true} {
		serverKey := newSigner(t)
		srv := startSSHServer(t, serverKey)
		addr := srv.ln.Addr().String()
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := ""
		if mismatch {
			line = knownhosts.Line([]string{knownhosts.Normalize(addr)}, newSigner(t).PublicKey()) + "\n"
		}
		os.WriteFile(kh, []byte(line), 0o600)
		clock := &fakeClock{now: time.Unix(1e9, 0)}
		var logs strings.Builder
		var logMu sync.Mutex
		log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
			logMu.Lock()
			defer logMu.Unlock()
			return logs.Write(p)
		}), nil))
		ctx, cancel := context.WithCancel(context.Background())
		var attempts []time.Time
		tun, err := New(Options{Server: addr, User: "u", Signer: newSigner(t), KnownHostsFile: kh,
			Forwards: []Forward{{Name: "a", Remote: "/tmp/a.sock", Local: "127.0.0.1:1"}},
			Logger:   log, Registry: prometheus.NewRegistry(), Clock: clock,
			Dial: func(ctx context.Context, n, a string) (net.Conn, error) {
				attempts = append(attempts, clock.Now())
				if len(attempts) == 4 {
					cancel()
				}
				return (&net.Dialer{}).DialContext(ctx, n, a)
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tun.Run(ctx); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < len(attempts); i++ {
			if gap := attempts[i].Sub(attempts[i-1]); gap < time.Minute {
				t.Errorf("mismatch=%v: attempts %d and %d only %v apart", mismatch, i-1, i, gap)
			}
		}
		srv.mu.Lock()
		authed := srv.authed
		srv.mu.Unlock()
		st := tun.Status()
		want, wantText := KindHostKeyUnknown, "add this line to "+kh+": "+knownhosts.Normalize(addr)+" ssh-ed25519 "
		if mismatch {
			want, wantText = KindHostKeyMismatch, "HOST KEY MISMATCH"
		}
		logMu.Lock()
		text := logs.String()
		logMu.Unlock()
		if authed != 0 || st.Sessions != 0 || st.LastErrorKind != want || !strings.Contains(text, wantText) {
			t.Errorf("mismatch=%v: authed %d, status %+v, log:\n%s", mismatch, authed, st, text)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Dial failures are classified by type.
func TestClassifyDial(t *testing.T) {
	ctx := context.Background()
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	_, err := net.Dial("tcp", addr)
	if k := classifyDial(ctx, addr, err).Kind; k != KindRefused {
		t.Errorf("refused: %v", k)
	}
	// A name that is not a valid domain name fails in the resolver itself:
	// a DNS error without any DNS traffic leaving the machine.
	d := &net.Dialer{Resolver: &net.Resolver{PreferGo: true}}
	_, err = d.Dial("tcp", "keepgate..invalid:22")
	if k := classifyDial(ctx, "keepgate..invalid:22", err).Kind; k != KindDNS {
		t.Errorf("dns: %v (%v)", k, err)
	}
	_, err = (&net.Dialer{Timeout: time.Nanosecond}).Dial("tcp", "127.0.0.1:9")
	if err != nil && isTimeout(err) {
		if k := classifyDial(ctx, addr, err).Kind; k != KindConnectTimeout {
			t.Errorf("timeout: %v", k)
		}
	}
	if KindOf(nil) != KindNone || KindOf(io.EOF) != KindConnectionLost {
		t.Error("KindOf of plain errors")
	}
}

// freezableConn stops reading once frozen: its side hears nothing more,
// so it answers nothing.
type freezableConn struct {
	net.Conn
	frozen chan struct{}
}

func (f *freezableConn) Read(p []byte) (int, error) {
	n, err := f.Conn.Read(p)
	select {
	case <-f.frozen:
		select {} // a dead path: nothing more ever arrives
	default:
	}
	return n, err
}

// keepalive declares the link dead after interval × count without a byte
// from the server, and not while replies come.
func TestKeepaliveDetectsDeadPath(t *testing.T) {
	serverKey := newSigner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	srvConn := &freezableConn{Conn: b, frozen: make(chan struct{})}
	cfg := &ssh.ServerConfig{NoClientAuth: true}
	cfg.AddHostKey(serverKey)
	go func() {
		_, chans, reqs, err := ssh.NewServerConn(srvConn, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs) // answers keepalive@openssh.com (with a failure: any reply counts)
		for range chans {
		}
	}()
	clock := realClock{}
	ac := newActivityConn(a, clock)
	c, chans, reqs, err := ssh.NewClientConn(ac, "pipe", &ssh.ClientConfig{User: "u", HostKeyCallback: ssh.FixedHostKey(serverKey.PublicKey())})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go ssh.DiscardRequests(reqs)
	go func() {
		for range chans {
		}
	}()
	const interval, count = 100 * time.Millisecond, 3
	ctx, cancel := context.WithTimeout(context.Background(), 10*interval)
	if err := keepalive(ctx, c, ac, interval, count, clock); err != nil {
		t.Fatalf("healthy link: %v", err)
	}
	cancel()
	close(srvConn.frozen)
	t0 := time.Now()
	err = keepalive(context.Background(), c, ac, interval, count, clock)
	took := time.Since(t0)
	if KindOf(err) != KindKeepalive || took < interval*count/2 || took > 10*interval*count {
		t.Fatalf("frozen link: %v after %v", err, took)
	}
}
