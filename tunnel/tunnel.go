// Package tunnel is keeptunnel: it keeps a keepstore that sits behind NAT
// reachable from keepproxy's side through a reverse SSH tunnel that it
// supervises itself.
//
// One SSH connection to an sshd on the proxy's side carries every Forward:
// the server listens on a unix socket (or a TCP port) per forward and
// hands each connection to it back over the connection, and the tunnel
// connects it to the local keepstore. Contract:
//
//   - The server's host key must be pinned in a known_hosts file; an
//     unknown, mismatched or revoked key is refused (no session at all),
//     logged with what to do, and tried again at most once per
//     HostKeyRetry (1 minute).
//   - Every forward must be granted, or the session is torn down and
//     retried: a half-working tunnel is not "up".
//   - keepalive@openssh.com every KeepaliveInterval; nothing heard from
//     the server for KeepaliveInterval × KeepaliveCount means the path is
//     dead: the connection is closed and redialled.
//   - Redials wait a jittered exponential back-off (BackoffMin to
//     BackoffMax), which starts over after a session that stayed up
//     BackoffReset.
//   - A local keepstore that is down makes connections through its
//     forward fail at once; the tunnel stays up.
//   - Run returns nil when its context ends, after cancelling the
//     forwards and letting open connections finish for up to DrainTimeout.
package tunnel

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
)

// Options configure a Tunnel. Zero durations and counts take the defaults
// named on each field.
type Options struct {
	Server         string     // host:port of the sshd
	User           string     // the tunnel account on the server
	Signer         ssh.Signer // from LoadIdentity
	KnownHostsFile string     // pins the server's host key (required)
	Forwards       []Forward  // at least one; names and remotes unique

	KeepaliveInterval time.Duration // default 15s
	KeepaliveCount    int           // default 3
	ConnectTimeout    time.Duration // TCP connect; default 10s
	HandshakeTimeout  time.Duration // SSH handshake and forward requests; default 15s
	LocalDialTimeout  time.Duration // connect to a local keepstore; default 2s
	BackoffMin        time.Duration // default 500ms
	BackoffMax        time.Duration // default 30s
	BackoffReset      time.Duration // default 1m
	DrainTimeout      time.Duration // at shutdown; default 5s
	// HostKeyRetry spaces attempts after a host key refusal; default (and
	// the product's setting) 1 minute. Tests set Clock instead.
	HostKeyRetry time.Duration

	Logger   *slog.Logger          // required
	Registry prometheus.Registerer // required
	Clock    Clock                 // nil: the real clock
	// Dial connects to the server; nil: a net.Dialer. Tests use it to put
	// a relay in the path.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Tunnel is a supervised reverse tunnel; see the package comment.
type Tunnel struct {
	o        Options
	log      *slog.Logger
	m        *metrics
	clock    Clock
	forwards []*forwardState
	backoff  Backoff

	mu     sync.Mutex
	status Status
}

// Status is the tunnel's state, as the health endpoint reports it.
type Status struct {
	Connected     bool      `json:"connected"`
	Since         time.Time `json:"since,omitzero"` // when the current session (or outage) began
	Sessions      int       `json:"sessions"`
	LastErrorKind Kind      `json:"last_error_kind,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrorAt   time.Time `json:"last_error_at,omitzero"`
}

// New checks o and registers the metrics.
func New(o Options) (*Tunnel, error) {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.KeepaliveInterval, 15*time.Second)
	def(&o.ConnectTimeout, 10*time.Second)
	def(&o.HandshakeTimeout, 15*time.Second)
	def(&o.LocalDialTimeout, 2*time.Second)
	def(&o.BackoffMin, 500*time.Millisecond)
	def(&o.BackoffMax, 30*time.Second)
	def(&o.BackoffReset, time.Minute)
	def(&o.DrainTimeout, 5*time.Second)
	def(&o.HostKeyRetry, time.Minute)
	if o.KeepaliveCount <= 0 {
		o.KeepaliveCount = 3
	}
	switch {
	case o.Server == "" || o.User == "" || o.Signer == nil || o.KnownHostsFile == "":
		return nil, errorf(KindConfig, "tunnel: Server, User, Signer and KnownHostsFile are required")
	case len(o.Forwards) == 0:
		return nil, errorf(KindConfig, "tunnel: at least one forward is required")
	case o.Logger == nil || o.Registry == nil:
		return nil, errorf(KindConfig, "tunnel: Logger and Registry are required")
	}
	if _, _, err := net.SplitHostPort(o.Server); err != nil {
		return nil, &Error{Kind: KindConfig, Msg: "tunnel: Server must be host:port", Err: err}
	}
	seen := map[string]bool{}
	t := &Tunnel{o: o, log: o.Logger, clock: o.Clock}
	for _, f := range o.Forwards {
		if f.Name == "" || f.Remote == "" || f.Local == "" || seen["n"+f.Name] || seen["r"+f.Remote] {
			return nil, errorf(KindConfig, "tunnel: forward %+v: name, remote and local are required, names and remotes unique", f)
		}
		seen["n"+f.Name], seen["r"+f.Remote] = true, true
		t.forwards = append(t.forwards, &forwardState{Forward: f})
	}
	if t.clock == nil {
		t.clock = realClock{}
	}
	if t.o.Dial == nil {
		t.o.Dial = (&net.Dialer{KeepAlive: -1}).DialContext // our keepalive is the SSH one
	}
	m, err := newMetrics(o.Registry, o.Forwards)
	if err != nil {
		return nil, err
	}
	t.m = m
	t.backoff = Backoff{Min: o.BackoffMin, Max: o.BackoffMax, ResetAfter: o.BackoffReset}
	t.status.Since = t.clock.Now()
	return t, nil
}

// Status returns the current state.
func (t *Tunnel) Status() Status {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.status
}

// Run keeps the tunnel up until ctx ends; it then returns nil.
func (t *Tunnel) Run(ctx context.Context) error {
	for {
		start := t.clock.Now()
		up, err := t.session(ctx)
		if ctx.Err() != nil {
			t.log.Info("keeptunnel stopped")
			return nil
		}
		kind := KindOf(err)
		now := t.clock.Now()
		t.m.recordError(kind, float64(now.UnixNano())/1e9)
		var wait time.Duration
		if kind.hostKey() {
			// Retrying sooner cannot help: someone must fix known_hosts
			// (or the server). At most one attempt per HostKeyRetry.
			wait = start.Add(t.o.HostKeyRetry).Sub(now)
		} else {
			if up > 0 {
				t.backoff.Healthy(up)
			}
			wait = t.backoff.Next()
		}
		wait = max(wait, 0)
		t.mu.Lock()
		if t.status.Connected {
			t.status.Since = now // the outage begins
		}
		t.status.Connected = false
		t.status.LastErrorKind, t.status.LastError, t.status.LastErrorAt = kind, err.Error(), now
		t.mu.Unlock()
		attrs := []any{"kind", string(kind), "error", err.Error(), "retry_in", wait.Round(time.Millisecond).String()}
		switch {
		case up > 0:
			t.log.Warn("tunnel down; redialling", append(attrs, "was_up", up.Round(time.Millisecond).String())...)
		case kind.hostKey() || kind == KindConfig || kind == KindAuth || kind == KindForwardDenied:
			t.log.Error("tunnel refused; an operator must act (see error)", attrs...)
		default:
			t.log.Warn("cannot establish the tunnel", attrs...)
		}
		select {
		case <-ctx.Done():
			t.log.Info("keeptunnel stopped")
			return nil
		case <-t.clock.After(wait):
		}
	}
}

// session makes one connection: dial, handshake, every forward, then
// serves until the link dies or ctx ends. up is how long the session was
// established (0 if it never was); err says why it ended (ctx's error
// when ctx ended).
func (t *Tunnel) session(ctx context.Context) (up time.Duration, err error) {
	hk := hostKeys{file: t.o.KnownHostsFile, server: t.o.Server}
	check, algos, err := hk.load()
	if err != nil {
		return 0, err
	}
	dctx, cancel := context.WithTimeout(ctx, t.o.ConnectTimeout)
	raw, err := t.o.Dial(dctx, "tcp", t.o.Server)
	cancel()
	if err != nil {
		return 0, classifyDial(ctx, t.o.Server, err)
	}
	// Until the session is established, shutting down closes the
	// connection (nothing to drain yet); afterwards it drains.
	stopOnCancel := context.AfterFunc(ctx, func() { raw.Close() })
	defer stopOnCancel()
	defer raw.Close()
	conn := newActivityConn(raw, t.clock)

	var hostKeyAccepted, authAttempted bool
	cfg := &ssh.ClientConfig{
		User: t.o.User,
		Auth: []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			authAttempted = true
			return []ssh.Signer{t.o.Signer}, nil
		})},
		HostKeyCallback: func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := check(host, remote, key); err != nil {
				return err
			}
			hostKeyAccepted = true
			return nil
		},
		HostKeyAlgorithms: algos,
		ClientVersion:     "SSH-2.0-keeptunnel",
	}
	raw.SetDeadline(time.Now().Add(t.o.HandshakeTimeout))
	c, chans, reqs, err := ssh.NewClientConn(conn, t.o.Server, cfg)
	if err != nil {
		return 0, classifyHandshake(ctx, err, hostKeyAccepted, authAttempted)
	}
	defer c.Close()
	go ssh.DiscardRequests(reqs)
	d := newDispatcher(t.forwards, localDialer(t.o.LocalDialTimeout), t.log, t.m)
	served := make(chan struct{})
	go func() { d.serve(ctx, chans); close(served) }()
	defer func() { c.Close(); <-served; d.active.Wait() }()

	// Every forward, still under the handshake deadline: a server that
	// stops answering here must not hang the session set-up.
	for _, f := range t.forwards {
		if err := f.request(c); err != nil {
			return 0, err
		}
	}
	if !stopOnCancel() {
		return 0, &Error{Kind: KindCanceled, Msg: "shutting down"}
	}
	raw.SetDeadline(time.Time{})
	began := t.clock.Now()
	t.m.connected.Set(1)
	defer t.m.connected.Set(0)
	t.m.sessions.Inc()
	t.mu.Lock()
	if t.status.Sessions > 0 {
		t.m.reconnects.Inc()
	}
	t.status.Sessions++
	t.status.Connected, t.status.Since = true, began
	t.mu.Unlock()
	names := make([]string, 0, len(t.forwards))
	for _, f := range t.forwards {
		names = append(names, f.Remote+" -> "+f.Local)
	}
	t.log.Info("tunnel up", "server", t.o.Server, "user", t.o.User, "forwards", names, "server_version", string(c.ServerVersion()))

	kctx, kcancel := context.WithCancel(ctx)
	defer kcancel()
	dead := make(chan error, 2)
	go func() { dead <- keepalive(kctx, c, conn, t.o.KeepaliveInterval, t.o.KeepaliveCount, t.clock) }()
	go func() { dead <- classifyLost(ctx, c.Wait()) }()
	select {
	case err = <-dead:
		if err == nil { // keepalive saw ctx end
			err = ctx.Err()
		}
	case <-ctx.Done():
	}
	up = t.clock.Now().Sub(began)
	if ctx.Err() != nil {
		t.drain(c, d)
		return up, ctx.Err()
	}
	return up, err
}

// drain, at shutdown, asks the server to stop listening (so new
// connections to the forwards are refused by the server at once), then
// lets open connections finish for up to DrainTimeout.
func (t *Tunnel) drain(c ssh.Conn, d *dispatcher) {
	d.stopAccepting()
	deadline := time.After(t.o.DrainTimeout)
	cancelled := make(chan struct{})
	go func() {
		for _, f := range t.forwards {
			f.cancel(c)
		}
		close(cancelled)
	}()
	select {
	case <-cancelled:
	case <-deadline:
		return
	}
	idle := make(chan struct{})
	go func() { d.active.Wait(); close(idle) }()
	select {
	case <-idle:
	case <-deadline:
		t.log.Warn("shutting down with forwarded connections still open", "drain_timeout", t.o.DrainTimeout.String())
	}
}

// Handler serves the health endpoint, GET /_health/ping: 200 and
// {"health":"OK",...} while connected, 503 and {"health":"ERROR",...}
// otherwise (with the last error's kind and message). Anything else is
// served by next (the metrics handler), if given.
func (t *Tunnel) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_health/ping" {
			if next != nil {
				next.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
			return
		}
		st := t.Status()
		body := struct {
			Health string `json:"health"`
			Status
		}{"OK", st}
		code := http.StatusOK
		if !st.Connected {
			body.Health, code = "ERROR", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(body)
	})
}
