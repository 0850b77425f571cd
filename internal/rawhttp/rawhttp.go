// Package rawhttp is an HTTP/1.1 client for GET and HEAD requests whose
// response body can be moved socket to socket without passing through
// user space.
//
// net/http's Transport reads every response body through its own buffered
// reader, so a proxy that relays a body copies each byte into user space
// and out again. A Client here writes the request and parses the header
// with net/http's own code (http.Request.Write, http.ReadResponse), then
// hands the body over as a Body: Read for ordinary use, and SpliceTo, which
// gives the destination an io.LimitedReader over the *net.TCPConn itself.
// When the destination is a TCP connection (an http.ResponseWriter of a
// plain-HTTP server forwards ReadFrom to it), Go's runtime splices the
// bytes through a kernel pipe (splice(2)); nothing is copied by the
// process.
//
// Only plain http:// over TCP; the caller keeps net/http for https and
// unix sockets. Connections are kept alive and reused per host when a body
// was read to its end.
package rawhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// Client sends GET and HEAD requests. The zero value is not usable; use New.
type Client struct {
	dialer        net.Dialer
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxIdle       int

	mu   sync.Mutex
	idle map[string][]*conn // host:port → idle connections, most recent last
}

// Options configures a Client; zero fields take the defaults noted.
type Options struct {
	DialTimeout           time.Duration // 2 s
	KeepAlive             time.Duration // 30 s (TCP keep-alive probes)
	ResponseHeaderTimeout time.Duration // 2 min
	IdleConnTimeout       time.Duration // 90 s
	MaxIdleConnsPerHost   int           // 64
}

// New returns a Client.
func New(o Options) *Client {
	def := func(d, v time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return v
	}
	c := &Client{
		dialer:        net.Dialer{Timeout: def(o.DialTimeout, 2*time.Second), KeepAlive: def(o.KeepAlive, 30*time.Second)},
		headerTimeout: def(o.ResponseHeaderTimeout, 2*time.Minute),
		idleTimeout:   def(o.IdleConnTimeout, 90*time.Second),
		maxIdle:       o.MaxIdleConnsPerHost,
		idle:          map[string][]*conn{},
	}
	if c.maxIdle <= 0 {
		c.maxIdle = 64
	}
	return c
}

// readBufferSize is the header reader's buffer. Body bytes that arrive
// with the header are read out of it first; the rest come straight off the
// socket, so it need not be large.
const readBufferSize = 16 << 10

type conn struct {
	addr   string // the pool's key
	tcp    *net.TCPConn
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
}

// Do sends req (GET or HEAD, an http:// URL, no body) and returns the
// response with the header read. resp.Body is a *Body; the caller must
// close it. A connection taken from the idle pool that turns out to be
// closed by the server before it answered is replaced once by a new one,
// as net/http does for idempotent requests.
func (c *Client) Do(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		return nil, fmt.Errorf("rawhttp: unsupported scheme %q", req.URL.Scheme)
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		return nil, fmt.Errorf("rawhttp: unsupported method %s", req.Method)
	}
	addr := req.URL.Host
	if req.URL.Port() == "" {
		addr = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	for attempt := 0; ; attempt++ {
		cn, reused, err := c.get(req.Context(), addr)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req, cn)
		if err == nil {
			return resp, nil
		}
		cn.tcp.Close()
		if !reused || attempt > 0 || req.Context().Err() != nil || !staleConn(err) {
			return nil, err
		}
	}
}

// staleConn reports an error that a kept-alive connection the server had
// already closed produces before any byte of an answer arrives.
func staleConn(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func (c *Client) roundTrip(req *http.Request, cn *conn) (*http.Response, error) {
	ctx := req.Context()
	// Cancelling the request unblocks whatever the connection is doing.
	stop := context.AfterFunc(ctx, func() { cn.tcp.SetDeadline(time.Unix(1, 0)) })
	cn.tcp.SetDeadline(time.Now().Add(c.headerTimeout))
	err := req.Write(cn.bw)
	if err == nil {
		err = cn.bw.Flush()
	}
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(cn.br, req)
	}
	if err != nil {
		stop()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	cn.tcp.SetDeadline(time.Time{})
	b := &Body{c: c, cn: cn, stop: stop, remaining: resp.ContentLength, reuse: !resp.Close}
	switch {
	case req.Method == http.MethodHead || resp.StatusCode == http.StatusNoContent || resp.StatusCode == http.StatusNotModified:
		b.remaining = 0
	case resp.ContentLength < 0 || len(resp.TransferEncoding) > 0:
		// Chunked or to-EOF: net/http's body reader frames it; no
		// splicing and no reuse.
		b.framed, b.remaining, b.reuse = resp.Body, -1, false
	}
	resp.Body = b
	return resp, nil
}

// get returns an idle connection to addr or dials a new one.
func (c *Client) get(ctx context.Context, addr string) (*conn, bool, error) {
	c.mu.Lock()
	for list := c.idle[addr]; len(list) > 0; list = c.idle[addr] {
		cn := list[len(list)-1]
		c.idle[addr] = list[:len(list)-1]
		if time.Since(cn.idleAt) < c.idleTimeout {
			c.mu.Unlock()
			return cn, true, nil
		}
		cn.tcp.Close()
	}
	c.mu.Unlock()
	nc, err := c.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, false, err
	}
	tcp, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return nil, false, fmt.Errorf("rawhttp: %s is not a TCP connection", addr)
	}
	return &conn{addr: addr, tcp: tcp, br: bufio.NewReaderSize(tcp, readBufferSize), bw: bufio.NewWriterSize(tcp, 4<<10)}, false, nil
}

func (c *Client) put(cn *conn) {
	cn.idleAt = time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle[cn.addr]) >= c.maxIdle {
		cn.tcp.Close()
		return
	}
	c.idle[cn.addr] = append(c.idle[cn.addr], cn)
}

// CloseIdleConnections closes the connections kept for reuse.
func (c *Client) CloseIdleConnections() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for addr, list := range c.idle {
		for _, cn := range list {
			cn.tcp.Close()
		}
		delete(c.idle, addr)
	}
}

// Body is a response body read from the connection. It is not safe for
// concurrent use.
type Body struct {
	c         *Client
	cn        *conn
	stop      func() bool
	remaining int64     // body bytes not yet read; -1: framed
	framed    io.Reader // net/http's reader for chunked or to-EOF bodies
	reuse     bool
	closed    bool
	err       error // sticky read error
}

// ErrSourceEnded is wrapped by SpliceTo's error when the server ended the
// body before its Content-Length.
var ErrSourceEnded = errors.New("server ended the body early")

// Read implements io.Reader; it returns io.ErrUnexpectedEOF (wrapping
// ErrSourceEnded) when the connection ends before the Content-Length.
func (b *Body) Read(p []byte) (int, error) {
	if b.framed != nil {
		return b.framed.Read(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.cn.br.Read(p)
	b.remaining -= int64(n)
	if err == io.EOF && b.remaining > 0 {
		err = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, ErrSourceEnded)
	}
	if err != nil {
		b.err = err
	}
	return n, err
}

// Remaining is the number of body bytes not yet read (-1: unknown).
func (b *Body) Remaining() int64 { return b.remaining }

// SpliceTo moves up to max bytes of the body to dst and returns how many
// it moved. Bytes that came in with the header are copied; the rest go
// through dst.ReadFrom with an io.LimitedReader over the TCP connection,
// which Go splices when dst is (or forwards to) a TCP connection.
//
// A short count comes with a non-nil error: one wrapping ErrSourceEnded
// when the server ended the body; otherwise the error of the move, which
// may be either side's (splice(2) does not say which) — except that
// errors.Is(err, syscall.EPIPE) is always the destination's.
func (b *Body) SpliceTo(dst io.Writer, max int64) (int64, error) {
	if b.framed != nil {
		return io.CopyN(dst, b.framed, max)
	}
	if b.err != nil {
		return 0, b.err
	}
	max = min(max, b.remaining)
	if max <= 0 {
		return 0, io.EOF
	}
	var n int64
	var err error
	if k := int64(b.cn.br.Buffered()); k > 0 {
		n, err = io.CopyN(dst, b.cn.br, min(k, max))
	} else {
		lr := &io.LimitedReader{R: b.cn.tcp, N: max}
		n, err = io.Copy(dst, lr)
		if err == nil && n < max {
			err = fmt.Errorf("%w: %w", io.ErrUnexpectedEOF, ErrSourceEnded)
		}
	}
	b.remaining -= n
	if err != nil {
		b.err = err
	}
	return n, err
}

// Close releases the connection: back to the pool when the body was read
// to its end, closed otherwise.
func (b *Body) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	// stop fails when the cancellation already ran: the connection's
	// deadline is in the past then, so it cannot be reused.
	live := b.stop()
	if b.reuse && b.remaining == 0 && b.err == nil && live {
		b.c.put(b.cn)
		return nil
	}
	return b.cn.tcp.Close()
}

// IsDestinationError reports an error of SpliceTo that is certainly the
// destination's: a broken pipe, or a deadline when the source had none.
func IsDestinationError(ctx context.Context, err error) bool {
	return errors.Is(err, syscall.EPIPE) || (errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil)
}
