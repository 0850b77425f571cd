// Package httpserver holds the HTTP plumbing shared by keepstore and
// keepproxy: the server with its connection-level limits (Server), request
// ids, access logs, the one place errors become HTTP responses, token
// extraction, and client addresses behind trusted proxies.
package httpserver

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/keepgate/keepgate/blockstore"
)

type ctxKey int

const (
	keyRequestID ctxKey = iota
	keyClientIP
)

// RequestIDFrom returns the request id stored by WithRequestID.
func RequestIDFrom(ctx context.Context) string {
	s, _ := ctx.Value(keyRequestID).(string)
	return s
}

// NewRequestID makes an id of the Arvados form: "req-" + 20 base-36 chars.
func NewRequestID() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 4, 24)
	copy(b, "req-")
	max := big.NewInt(36)
	for i := 0; i < 20; i++ {
		n, _ := rand.Int(rand.Reader, max)
		b = append(b, alphabet[n.Int64()])
	}
	return string(b)
}

// WithRequestID echoes a sane incoming X-Request-Id or generates one, sets
// it on the response and stores it in the request context.
func WithRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if id == "" || len(id) > 100 || strings.ContainsAny(id, " \t\r\n\"") {
			id = NewRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyRequestID, id)))
	})
}

// ClientIP returns the client address stored by WithClientIP (or the
// connection's remote address).
func ClientIP(r *http.Request) string {
	if s, ok := r.Context().Value(keyClientIP).(string); ok {
		return s
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// WithClientIP works out the real client address: X-Forwarded-For (right
// to left, skipping trusted hops) is believed only when the connection
// comes from one of the trusted proxy prefixes.
func WithClientIP(trusted []netip.Prefix, next http.Handler) http.Handler {
	isTrusted := func(s string) bool {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return false
		}
		a = a.Unmap()
		for _, p := range trusted {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		if isTrusted(ip) {
			if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
				hops := strings.Split(strings.Join(xff, ","), ",")
				for i := len(hops) - 1; i >= 0; i-- {
					h := strings.TrimSpace(hops[i])
					if _, err := netip.ParseAddr(h); err != nil {
						break
					}
					ip = h
					if !isTrusted(h) {
						break
					}
				}
			} else if xr := strings.TrimSpace(r.Header.Get("X-Real-Ip")); xr != "" {
				if _, err := netip.ParseAddr(xr); err == nil {
					ip = xr
				}
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), keyClientIP, ip)))
	})
}

// sigRe matches a permission signature in a locator; logs keep only its expiry.
var sigRe = regexp.MustCompile(`\+A[0-9a-f]{40}(@[0-9a-f]{8})`)

// WithAccessLog logs one JSON line per request: id, client, method, path
// (query string dropped: it may hold a token; signatures shortened to
// their expiry), status, bytes, duration.
func WithAccessLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := httpsnoop.CaptureMetrics(next, w, r)
		path := sigRe.ReplaceAllString(r.URL.Path, "+A…$1")
		if len(path) > 200 {
			path = path[:200]
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("request_id", RequestIDFrom(r.Context())),
			slog.String("client", ClientIP(r)),
			slog.String("method", r.Method),
			slog.String("path", path),
			slog.Int("status", m.Code),
			slog.Int64("bytes_out", m.Written),
			slog.Int64("bytes_in", r.ContentLength),
			slog.Float64("seconds", m.Duration.Seconds()))
	})
}

// WriteError is the one place an error becomes an HTTP response: the
// status from the kind table, a one-line plain-text message, Retry-After
// for overload, and an empty body for 499.
func WriteError(w http.ResponseWriter, err error) {
	k := blockstore.KindOf(err)
	status := k.Status()
	h := w.Header()
	h.Del("Content-Length")
	if k.RetryAfter() {
		h.Set("Retry-After", "2")
	}
	if status == 499 {
		w.WriteHeader(status)
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write([]byte(blockstore.Message(err) + "\n"))
}

// Token returns the API token of a request, looked for in this order:
// Authorization "Bearer <t>" or "OAuth2 <t>"; if allowOther, also the Basic
// auth password, the api_token query parameter and the arvados_api_token
// cookie (base64url). The empty string means none.
func Token(r *http.Request, allowOther bool) string {
	if a := r.Header.Get("Authorization"); a != "" {
		scheme, rest, _ := strings.Cut(a, " ")
		if scheme == "Bearer" || scheme == "OAuth2" {
			if t := strings.TrimSpace(rest); t != "" {
				return t
			}
		}
	}
	if !allowOther {
		return ""
	}
	if _, pw, ok := r.BasicAuth(); ok && pw != "" {
		return pw
	}
	if t := r.URL.Query().Get("api_token"); t != "" {
		return t
	}
	if c, err := r.Cookie("arvados_api_token"); err == nil {
		if b, err := base64.URLEncoding.DecodeString(c.Value); err == nil && len(b) > 0 {
			return string(b)
		}
	}
	return ""
}

// ParseClasses splits an X-Keep-Storage-Classes value: comma list,
// entries trimmed, empty ones dropped.
func ParseClasses(v string) []string {
	var out []string
	for _, c := range strings.Split(v, ",") {
		if c = strings.TrimSpace(c); c != "" {
			out = append(out, c)
		}
	}
	return out
}

// ParseContentLength parses a Content-Length header value; ok is false when
// it is missing, not a decimal number, or negative.
func ParseContentLength(v string) (int64, bool) {
	if v == "" {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil && n >= 0
}

// ProgressBody wraps r.Body so that the connection's read deadline is moved
// to now+idle before every read: a client that keeps sending, however
// slowly, is never cut off, and one that stalls for idle is (the read then
// fails with a timeout, reported as KindTimeout).
func ProgressBody(w http.ResponseWriter, r *http.Request, idle time.Duration) *ProgressReader {
	return &ProgressReader{rc: http.NewResponseController(w), body: r.Body, idle: idle}
}

// ProgressReader is returned by ProgressBody.
type ProgressReader struct {
	rc   *http.ResponseController
	body interface{ Read([]byte) (int, error) }
	idle time.Duration
	N    int64 // bytes read so far
	err  error // sticky terminal error (io.EOF at the end)
}

// Read reads the body. Once the body has ended (or failed) the deadline is
// cleared and the body is not read again: after EOF the server reads the
// connection in the background, and a deadline left armed would cancel the
// request while the handler is still working.
func (p *ProgressReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if p.idle > 0 {
		_ = p.rc.SetReadDeadline(time.Now().Add(p.idle))
	}
	n, err := p.body.Read(b)
	p.N += int64(n)
	if err != nil {
		if err == io.EOF && p.idle > 0 {
			// Clean end: disarm. (After a stall the expired deadline
			// stays, so the server does not wait to drain the body.)
			_ = p.rc.SetReadDeadline(time.Time{})
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			err = blockstore.E("read request body", blockstore.KindTimeout, "request body stalled: no data received for "+p.idle.String(), err)
		}
		p.err = err
	}
	return n, err
}

// ProgressWriter is a response body written with progress-based
// deadlines: before every write the connection's write deadline moves to
// now+idle, so a client that keeps reading, however slowly, is served to
// the end, and one that stops reading for idle is cut off (freeing what
// the request holds). It hides the ResponseWriter's ReadFrom. Clear must
// be called when the body is done: the deadline would otherwise outlive
// the response and fail the next one on a kept-alive connection.
type ProgressWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

// NewProgressWriter returns w's ProgressWriter; idle <= 0 sets no deadline.
func NewProgressWriter(w http.ResponseWriter, idle time.Duration) *ProgressWriter {
	return &ProgressWriter{w: w, rc: http.NewResponseController(w), idle: idle}
}

// Extend moves the write deadline to now+idle (for a writer that sends
// bytes around Write, e.g. by splicing).
func (p *ProgressWriter) Extend() {
	if p.idle > 0 {
		_ = p.rc.SetWriteDeadline(time.Now().Add(p.idle))
	}
}

// Write extends the deadline and writes b; a failure says the client
// stopped reading.
func (p *ProgressWriter) Write(b []byte) (int, error) {
	p.Extend()
	n, err := p.w.Write(b)
	if err != nil && p.idle > 0 {
		err = fmt.Errorf("client stopped reading (no progress for %s): %w", p.idle, err)
	}
	return n, err
}

// Clear removes the write deadline.
func (p *ProgressWriter) Clear() {
	if p.idle > 0 {
		_ = p.rc.SetWriteDeadline(time.Time{})
	}
}
