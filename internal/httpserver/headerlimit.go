package httpserver

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
)

// headerGuard counts the lines of a request's header section as they are
// read off the connection. net/http caps the header bytes (MaxHeaderBytes)
// but not the fields, and each distinct field costs a map entry of about
// 200 bytes: 32 KiB of tiny fields hold some 500 KB until the request ends
// or ReadHeaderTimeout passes. Counting on the connection stops such a
// request at MaxHeaderFields, before net/http has built the map.
//
// Counting is on from the moment the connection is accepted or becomes
// idle (the next bytes are a new request) until the header section ends:
// the first empty line after a non-empty one, or net/http reporting the
// request parsed (StateActive, which it reports for every request it has
// parsed, also for a pipelined one it had buffered already; the tests
// check that). Body bytes are never counted. The counters are used only
// by the goroutine reading the connection.
type headerGuard struct {
	on      atomic.Bool
	max     int  // lines allowed: fields + the request line
	lines   int  // lines seen so far (empty leading lines included)
	lineLen int  // bytes of the current line, CRs excluded
	started bool // a non-empty line has been seen
}

// errHeaderFields ends a connection whose request has too many header
// fields. It is returned as a read error, which net/http closes quietly
// (the 431 has been written already).
var errHeaderFields = errors.New("too many request header fields")

// reset starts counting a new header section of at most maxFields fields.
func (g *headerGuard) reset(maxFields int) {
	g.max, g.lines, g.lineLen, g.started = maxFields+1, 0, 0, false
	g.on.Store(maxFields > 0)
}

// stop ends counting until the next reset.
func (g *headerGuard) stop() { g.on.Store(false) }

// scan counts the lines in b; it reports whether the section has more
// than the allowed lines, and stops counting at the section's end.
func (g *headerGuard) scan(b []byte) (over bool) {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			g.lineLen += len(b) - bytes.Count(b, []byte{'\r'})
			return false
		}
		g.lineLen += i - bytes.Count(b[:i], []byte{'\r'})
		b = b[i+1:]
		if g.lineLen == 0 && g.started {
			g.stop() // the empty line ending the header section
			return false
		}
		g.started = g.started || g.lineLen > 0
		g.lineLen = 0
		if g.lines++; g.lines > g.max {
			return true
		}
	}
	return false
}

// rejectHeaders answers 431 (as net/http does for too many header bytes),
// closes the connection's write side and lets later reads fail.
func (c *trackedConn) rejectHeaders() {
	c.hdr.stop()
	c.l.m.headersRejected.Inc()
	c.hdrErr = &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: errHeaderFields}
	closeWithResponse(c.Conn, http.StatusRequestHeaderFieldsTooLarge, "",
		fmt.Sprintf("too many header fields (max_header_fields %d)\n", c.hdr.max-1))
}

// connState hands the server's connection states to the limiter.
func connState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*trackedConn); ok {
		tc.l.onState(tc, st)
	}
}
