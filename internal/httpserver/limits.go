package httpserver

import (
	"container/list"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

const (
	// silentNewGrace: a new connection that has sent nothing for this
	// long may be closed to make room, after the idle keep-alive ones.
	silentNewGrace = time.Second
	// maxShedding bounds the connections being answered 503 at once
	// (each holds a goroutine and a file descriptor for at most
	// shedTimeout); beyond it, shed connections are just closed.
	maxShedding = 64
	shedTimeout = time.Second
	// shedRetryAfter is the Retry-After of a shed connection, in seconds.
	shedRetryAfter = "5"
	// acceptLogEvery: at most one log line per this long for failing
	// accepts (the count of those not logged goes with it).
	acceptLogEvery = 10 * time.Second
	maxAcceptDelay = time.Second
)

// connLimiter is the net.Listener of a Server. It caps open connections,
// globally and per remote address, and never stalls its Accept loop:
//
//   - From reclaimAt (MaxConnections less 1/16) on, each new connection
//     closes the longest-idle keep-alive connection, if any (then a new
//     connection that has sent nothing for silentNewGrace), so active and
//     new clients are served while idle ones make room. A client at its
//     own cap likewise gives up its own idle connections first.
//   - At a cap with nothing to reclaim, the new connection is shed: a
//     minimal "503 Service Unavailable" with Retry-After and Connection:
//     close is written with a short deadline in a goroutine (at most
//     maxShedding at once; beyond, the connection is just closed).
//   - Temporary accept errors (EMFILE, ENFILE) are retried with back-off
//     inside Accept and logged at most once per acceptLogEvery.
//
// It also counts header fields as they arrive (see headerGuard). Its
// connections must be served by an http.Server whose ConnState is
// connState (NewServer does that): that is how it knows which connections
// are idle and when a header section has ended.
type connLimiter struct {
	inner     net.Listener
	lim       Limits
	reclaimAt int
	log       *slog.Logger
	m         *connMetrics

	mu      sync.Mutex
	open    int
	quiet   int // connections in the idle or fresh lists
	clients map[netip.Addr]*clientConns
	all     quietLists

	shedding  chan struct{} // semaphore of maxShedding
	done      chan struct{}
	closeOnce sync.Once
	acceptLog rateLog
}

// quietLists hold the connections that wait for a request: idle ones
// (keep-alive after a response) and fresh ones (accepted, nothing sent),
// oldest first.
type quietLists struct{ idle, fresh list.List }

// clientConns are the connections of one remote address.
type clientConns struct {
	n int
	quietLists
}

// newConnLimiter wraps ln.
func newConnLimiter(ln net.Listener, lim Limits, log *slog.Logger, m *connMetrics) *connLimiter {
	l := &connLimiter{inner: ln, lim: lim, log: log, m: m, clients: map[netip.Addr]*clientConns{},
		shedding: make(chan struct{}, maxShedding), done: make(chan struct{})}
	l.reclaimAt = lim.MaxConnections - lim.MaxConnections/16
	return l
}

// Addr is the listener's address.
func (l *connLimiter) Addr() net.Addr { return l.inner.Addr() }

// Close closes the listener; open connections are not affected.
func (l *connLimiter) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.inner.Close()
}

// Accept returns the next admitted connection, shedding those over a cap
// and retrying temporary errors itself.
func (l *connLimiter) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.Is(err, net.ErrClosed) || !errors.As(err, &te) || !te.Temporary() {
				return nil, err
			}
			l.m.acceptErrors.Inc()
			delay = min(max(2*delay, 5*time.Millisecond), maxAcceptDelay)
			l.acceptLog.log(l.log, "accept failed; retrying (connections wait in the listen queue meanwhile)", err, delay)
			select {
			case <-time.After(delay):
			case <-l.done:
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		tc, reason := l.admit(c)
		if tc != nil {
			return tc, nil
		}
		l.shed(c, reason)
	}
}

// admit counts c in, closing quiet connections to make room as needed;
// it returns nil and the reason when c must be shed.
func (l *connLimiter) admit(c net.Conn) (*trackedConn, string) {
	addr := remoteAddr(c)
	tc := &trackedConn{Conn: c, l: l, addr: addr, since: time.Now()}
	tc.perClient = l.lim.MaxConnectionsPerClient > 0 && !addrIn(addr, l.lim.Exempt)
	tc.hdr.reset(l.lim.MaxHeaderFields)
	var victims []*trackedConn
	defer func() {
		l.m.reclaimed.Add(float64(len(victims)))
		for _, v := range victims {
			v.Conn.Close() // detached already: Close will not count it out again
		}
	}()
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	cl := l.clients[addr]
	if tc.perClient && cl != nil && cl.n >= l.lim.MaxConnectionsPerClient {
		v := cl.oldestReclaimable(now)
		if v == nil {
			l.m.shed.WithLabelValues(shedPerClient).Inc()
			return nil, shedPerClient
		}
		victims = append(victims, v)
		l.detach(v)
	}
	if max := l.lim.MaxConnections; max > 0 && l.open >= l.reclaimAt {
		if v := l.all.oldestReclaimable(now); v != nil {
			victims = append(victims, v)
			l.detach(v)
		} else if l.open >= max {
			l.m.shed.WithLabelValues(shedGlobal).Inc()
			return nil, shedGlobal
		}
	}
	if cl = l.clients[addr]; cl == nil { // again: a victim may have been its last connection
		cl = &clientConns{}
		l.clients[addr] = cl
	}
	cl.n++
	l.open++
	l.m.open.Set(float64(l.open))
	tc.client = cl
	l.enterQuiet(tc, true)
	return tc, ""
}

// oldestReclaimable is the longest-idle keep-alive connection, else the
// oldest fresh one that has been silent for silentNewGrace, else nil.
func (q *quietLists) oldestReclaimable(now time.Time) *trackedConn {
	if e := q.idle.Front(); e != nil {
		return e.Value.(*trackedConn)
	}
	if e := q.fresh.Front(); e != nil {
		if tc := e.Value.(*trackedConn); now.Sub(tc.since) >= silentNewGrace {
			return tc
		}
	}
	return nil
}

// enterQuiet puts tc on the idle (or, if fresh, the fresh) lists. l.mu held.
func (l *connLimiter) enterQuiet(tc *trackedConn, fresh bool) {
	if tc.detached || tc.quietElem != nil {
		return
	}
	all, own := &l.all.idle, &tc.client.idle
	if fresh {
		all, own = &l.all.fresh, &tc.client.fresh
	}
	tc.quietList, tc.quietElem = all, all.PushBack(tc)
	tc.clientList, tc.clientElem = own, own.PushBack(tc)
	tc.quiet.Store(true)
	l.quiet++
	l.m.idle.Set(float64(l.quiet))
}

// leaveQuiet takes tc off the quiet lists. l.mu held.
func (l *connLimiter) leaveQuiet(tc *trackedConn) {
	tc.quiet.Store(false)
	if tc.quietElem == nil {
		return
	}
	tc.quietList.Remove(tc.quietElem)
	tc.clientList.Remove(tc.clientElem)
	tc.quietElem, tc.clientElem, tc.quietList, tc.clientList = nil, nil, nil, nil
	l.quiet--
	l.m.idle.Set(float64(l.quiet))
}

// detach counts tc out (it is about to be closed, or has been). l.mu held.
func (l *connLimiter) detach(tc *trackedConn) {
	if tc.detached {
		return
	}
	l.leaveQuiet(tc)
	tc.detached = true
	l.open--
	l.m.open.Set(float64(l.open))
	if tc.client.n--; tc.client.n == 0 && l.clients[tc.addr] == tc.client {
		delete(l.clients, tc.addr)
	}
}

// shed answers c with a minimal 503 (in a goroutine, bounded) and closes it.
func (l *connLimiter) shed(c net.Conn, reason string) {
	select {
	case l.shedding <- struct{}{}:
	default:
		c.Close()
		return
	}
	msg := fmt.Sprintf("server has too many connections (max_connections %d); retry later\n", l.lim.MaxConnections)
	if reason == shedPerClient {
		msg = fmt.Sprintf("too many connections from your address (max_connections_per_client %d); retry later\n", l.lim.MaxConnectionsPerClient)
	}
	go func() {
		defer func() { <-l.shedding }()
		closeWithResponse(c, blockstore.KindOverloaded.Status(), "Retry-After: "+shedRetryAfter+"\r\n", msg)
	}()
}

// closeWithResponse writes a minimal response with Connection: close,
// half-closes c and reads (discarding) what the client still sends for a
// moment, so that the client can read the response before the close
// (closing with unread input would reset the connection); then closes c.
func closeWithResponse(c net.Conn, status int, extraHeaders, body string) {
	defer c.Close()
	deadline := time.Now().Add(shedTimeout)
	c.SetDeadline(deadline)
	_, err := fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n%sConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), extraHeaders, len(body), body)
	if err != nil {
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	io.CopyN(io.Discard, c, 256<<10)
}

// onState follows the server's view of tc: idle connections become
// reclaimable, and each new request starts a new header count.
func (l *connLimiter) onState(tc *trackedConn, st http.ConnState) {
	switch st {
	case http.StateIdle:
		tc.hdr.reset(l.lim.MaxHeaderFields)
		l.mu.Lock()
		l.enterQuiet(tc, false)
		l.mu.Unlock()
	case http.StateActive, http.StateHijacked:
		tc.hdr.stop()
		if tc.quiet.Load() {
			l.mu.Lock()
			l.leaveQuiet(tc)
			l.mu.Unlock()
		}
	case http.StateClosed:
		l.mu.Lock()
		l.detach(tc)
		l.mu.Unlock()
	}
}

// trackedConn is a connection admitted by a connLimiter.
type trackedConn struct {
	net.Conn
	l         *connLimiter
	addr      netip.Addr
	perClient bool // subject to MaxConnectionsPerClient
	since     time.Time
	hdr       headerGuard
	hdrErr    error
	closeOnce sync.Once
	// quiet: on the quiet lists, no byte read since. Read checks it
	// without the lock.
	quiet atomic.Bool

	// Protected by l.mu:
	client                *clientConns
	detached              bool
	quietList, clientList *list.List
	quietElem, clientElem *list.Element
}

// Read reads from the connection, taking it off the quiet lists at its
// first byte and counting header fields while a header section arrives.
func (c *trackedConn) Read(p []byte) (int, error) {
	if c.hdrErr != nil {
		return 0, c.hdrErr
	}
	n, err := c.Conn.Read(p)
	if n > 0 && c.quiet.Load() {
		c.l.mu.Lock()
		c.l.leaveQuiet(c)
		c.l.mu.Unlock()
	}
	if n > 0 && c.hdr.on.Load() && c.hdr.scan(p[:n]) {
		c.rejectHeaders()
		return 0, c.hdrErr
	}
	return n, err
}

// ReadFrom hands net/http's response ReadFrom to the TCP connection, so a
// body read off another socket (a store's, through rawhttp) is spliced
// instead of copied. Writes are not tracked, so nothing is bypassed.
func (c *trackedConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite half-closes a TCP connection (net/http uses it before a
// lingering close).
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close counts the connection out and closes it.
func (c *trackedConn) Close() error {
	c.closeOnce.Do(func() {
		c.l.mu.Lock()
		c.l.detach(c)
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// remoteAddr is c's remote IP address (the zero Addr if it has none).
func remoteAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

func addrIn(a netip.Addr, prefixes []netip.Prefix) bool {
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// rateLog logs a recurring error at most once per acceptLogEvery, with
// the number of occurrences not logged since the last line.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func (r *rateLog) log(log *slog.Logger, msg string, err error, delay time.Duration) {
	r.mu.Lock()
	now := time.Now()
	if !r.last.IsZero() && now.Sub(r.last) < acceptLogEvery {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	r.mu.Unlock()
	log.Error(msg, "error", err.Error(), "retry_in", delay.String(), "not_logged_since_last", n)
}
