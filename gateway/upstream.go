package gateway

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/rawhttp"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
)

// upstream is the HTTP client side of the Keep protocol toward keepstores.
type upstream struct {
	client *http.Client // http:// and https:// stores
	// raw answers GETs and HEADs to http:// stores: its bodies can be
	// spliced into the client's connection (splice.go). nil when the
	// gateway was given its own Transport.
	raw        *rawhttp.Client
	unixClient *http.Client // http+unix:// stores
	sockets    *unixSockets
	via        string // toward upstream gateways: "HTTP/1.1 keepgate-<proxy id>"
}

func newUpstream(rt http.RoundTripper) *upstream {
	sockets := &unixSockets{hold: unixDownHold}
	noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if rt != nil {
		c := &http.Client{Transport: rt, CheckRedirect: noRedirect}
		return &upstream{client: c, unixClient: c, sockets: sockets}
	}
	tcp := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   4 * time.Second,
		ResponseHeaderTimeout: 2 * time.Minute,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		WriteBufferSize:       256 << 10,
		ReadBufferSize:        256 << 10,
	}
	// Stores behind a tunnel: a fresh connection per request. A pooled
	// connection would still lead into the tunnel session it was made
	// through; after that session's path froze and keeptunnel rebound the
	// socket in a new session, a request on it would hang instead of
	// reaching the store. Connecting is local (the socket) plus one
	// channel open to the site.
	unix := tcp.Clone()
	unix.DialContext = sockets.dial
	unix.DisableKeepAlives = true
	return &upstream{
		client: &http.Client{Transport: tcp, CheckRedirect: noRedirect},
		raw: rawhttp.New(rawhttp.Options{DialTimeout: 2 * time.Second, KeepAlive: 30 * time.Second,
			ResponseHeaderTimeout: tcp.ResponseHeaderTimeout, IdleConnTimeout: tcp.IdleConnTimeout, MaxIdleConnsPerHost: tcp.MaxIdleConnsPerHost}),
		unixClient: &http.Client{Transport: unix, CheckRedirect: noRedirect},
		sockets:    sockets,
	}
}

// unixDialTimeout bounds the connect to a store's unix socket: a local
// operation that either works at once or not at all.
const unixDialTimeout = time.Second

// unixDownHold: after a dial to a store's socket was refused (nothing
// listening: the tunnel is down) or found no socket, further requests to
// that store fail at once for this long without dialling, as for any
// store that is down: they fail over to the next store and do not hammer
// the socket.
const unixDownHold = 500 * time.Millisecond

// unixSockets maps the synthetic host names that requests to http+unix
// stores carry (the request URL needs a host) to the socket paths, and
// remembers sockets that refused a dial.
type unixSockets struct {
	hold  time.Duration
	paths sync.Map // host -> socket path
	mu    sync.Mutex
	down  map[string]downSocket // path -> last refusal
}

type downSocket struct {
	at  time.Time
	err error
}

// host names path in request URLs: unix-<md5(path)[:16]>.invalid.
func (s *unixSockets) host(path string) string {
	sum := md5.Sum([]byte(path))
	h := "unix-" + hex.EncodeToString(sum[:8]) + ".invalid"
	s.paths.LoadOrStore(h, path)
	return h
}

// dial is the http+unix transport's DialContext.
func (s *unixSockets) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	p, ok := s.paths.Load(host)
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: fmt.Errorf("no socket known for host %q", host)}
	}
	path := p.(string)
	s.mu.Lock()
	if d, ok := s.down[path]; ok && time.Since(d.at) < s.hold {
		s.mu.Unlock()
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"},
			Err: fmt.Errorf("store socket refused a connection %v ago (tunnel down?): %w", time.Since(d.at).Round(time.Millisecond), d.err)}
	}
	s.mu.Unlock()
	c, err := (&net.Dialer{Timeout: unixDialTimeout}).DialContext(ctx, "unix", path)
	if err != nil && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)) {
		s.mu.Lock()
		if s.down == nil {
			s.down = map[string]downSocket{}
		}
		s.down[path] = downSocket{at: time.Now(), err: err}
		s.mu.Unlock()
	} else if err == nil {
		s.mu.Lock()
		delete(s.down, path)
		s.mu.Unlock()
	}
	return c, err
}

// unixURLPrefix starts the URL of a store reached through a unix socket:
// http+unix:///path/to/socket.
const unixURLPrefix = "http+unix://"

// target returns the client and base URL for requests to svc.
func (u *upstream) target(svc placement.Service) (*http.Client, string) {
	if path, ok := strings.CutPrefix(svc.URL, unixURLPrefix); ok {
		return u.unixClient, "http://" + u.sockets.host(path)
	}
	return u.client, svc.URL
}

type putHeaders struct {
	token     string
	replicas  int
	classes   []string
	requestID string
	// sums, when set, makes the PUT the checksum form (checksum_put.go):
	// chunked to /<hash>+<size>, with sums() in the ChunkChecksums trailer.
	sums func() *blockstore.Checksums
}

type putReply struct {
	locator   string
	replicas  int
	confirmed map[string]int // nil when the store sent no Confirmed header
}

// put sends one block to one store.
func (u *upstream) put(ctx context.Context, svc placement.Service, h blockstore.Hash, size int64, body io.Reader, hd putHeaders) (putReply, error) {
	metering.Touch(ctx, svc.UUID)
	client, base := u.target(svc)
	path := h.String()
	if hd.sums != nil {
		path = blockstore.Locator{Hash: h, Size: size}.String()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+"/"+path, nil)
	if err != nil {
		return putReply{}, blockstore.E("upstream.put", blockstore.KindInternal, err)
	}
	switch {
	case hd.sums != nil:
		withChecksumTrailer(req, h, body, hd.sums)
		req.Header.Set("Expect", "100-continue")
	case size > 0:
		req.ContentLength = size
		req.Body = io.NopCloser(body)
		// A store that refuses (full, busy, bad token) answers before any
		// byte is sent, so it can still be replaced from offset 0.
		req.Header.Set("Expect", "100-continue")
	default:
		req.ContentLength = 0
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	u.setCommon(req, svc, hd.token, hd.requestID)
	req.Header.Set(keepwire.DesiredReplicas, strconv.Itoa(hd.replicas))
	if len(hd.classes) > 0 {
		req.Header.Set(keepwire.StorageClasses, strings.Join(hd.classes, ", "))
	}
	resp, err := client.Do(req)
	if err != nil {
		return putReply{}, upstreamErr(svc, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return putReply{}, statusErr(svc, resp.StatusCode, text)
	}
	rep := putReply{locator: strings.TrimSpace(string(text)), replicas: 1}
	if n, ok := keepwire.ParseReplicasStored(resp.Header.Get(keepwire.ReplicasStored)); ok {
		rep.replicas = n
	}
	if v, ok := resp.Header[keepwire.StorageClassesConfirmed]; ok {
		rep.confirmed = keepwire.ParseConfirmed(strings.Join(v, ","))
	}
	return rep, nil
}

// get opens a block on one store; off > 0 asks for the rest from off with
// a Range request. The caller closes the body.
func (u *upstream) get(ctx context.Context, svc placement.Service, loc string, method, token, requestID string, off int64) (*http.Response, error) {
	metering.Touch(ctx, svc.UUID)
	client, base := u.target(svc)
	req, err := http.NewRequestWithContext(ctx, method, base+"/"+loc, nil)
	if err != nil {
		return nil, blockstore.E("upstream.get", blockstore.KindInternal, err)
	}
	u.setCommon(req, svc, token, requestID)
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	do := client.Do
	if u.raw != nil && strings.HasPrefix(base, "http://") && client == u.client {
		do = u.raw.Do
	}
	resp, err := do(req)
	if err != nil {
		return nil, upstreamErr(svc, err)
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		return resp, nil
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return nil, statusErr(svc, resp.StatusCode, text)
}

func (u *upstream) setCommon(req *http.Request, svc placement.Service, token, requestID string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if requestID != "" {
		req.Header.Set(keepwire.RequestID, requestID)
	}
	if strings.HasPrefix(svc.UUID, "upstream-") {
		// Another gateway refuses requests that passed "a keepproxy"
		// (Arvados' loop guard); ours is recognised by its proxy id.
		req.Header.Set("Via", u.via)
	} else {
		req.Header.Set("Via", "HTTP/1.1 keepproxy")
	}
}

// upstreamErr wraps a transport failure: temporary, kind BadGateway.
func upstreamErr(svc placement.Service, err error) error {
	if errors.Is(err, context.Canceled) {
		return &blockstore.Error{Op: "store " + svc.UUID, Kind: blockstore.KindCanceled, Err: err}
	}
	return &blockstore.Error{Op: "store " + svc.UUID, Kind: blockstore.KindBadGateway, Msg: "keep store unreachable", Err: err}
}

// statusErr turns a store's error reply into an error whose kind follows
// the shared status table and whose message is the store's first line.
// This is the one place a store's reply is classified: a 502 saying
// "checksum mismatch" is a store reporting its copy corrupt (KEEP-PROTOCOL
// §5.2 gives it no other signal), KindCorrupt; everything else by status.
func statusErr(svc placement.Service, status int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	kind := blockstore.KindForStatus(status)
	if status == http.StatusBadGateway && strings.Contains(msg, "checksum mismatch") {
		kind = blockstore.KindCorrupt
	}
	return &upstreamStatusError{svc: svc.UUID, status: status, msg: msg, kind: kind}
}

type upstreamStatusError struct {
	svc    string
	status int
	msg    string
	kind   blockstore.Kind
}

func (e *upstreamStatusError) Error() string {
	return fmt.Sprintf("store %s: HTTP %d %s", e.svc, e.status, e.msg)
}

// Unwrap exposes a kinded error so blockstore.KindOf classifies it.
func (e *upstreamStatusError) Unwrap() error {
	return &blockstore.Error{Kind: e.kind, Msg: e.msg}
}

// statusOfUpstream returns the HTTP status a store answered, or 0.
func statusOfUpstream(err error) int {
	var se *upstreamStatusError
	if errors.As(err, &se) {
		return se.status
	}
	return 0
}

// temporary reports whether a store failure may succeed on retry: a
// network error, or an answer keepwire.RetryableStatus allows.
func temporary(err error) bool {
	s := statusOfUpstream(err)
	if s == 0 {
		return !blockstore.Is(err, blockstore.KindCanceled)
	}
	return keepwire.RetryableStatus(s)
}
