package httpserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limits are the connection-level limits of a Server. Every field must be
// set by the caller (the defaults live in internal/config); NewServer
// refuses zero header limits and timeouts rather than fall back to
// net/http's (1 MiB of headers, no timeouts).
type Limits struct {
	// MaxHeaderBytes caps the request line plus headers of one request;
	// net/http answers 431 beyond it, before any handler runs.
	MaxHeaderBytes int
	// MaxHeaderFields caps the header lines of one request (431 beyond),
	// counted on the connection as they arrive: a header section of many
	// tiny fields costs about 15 times its size in memory.
	MaxHeaderFields int
	// MaxConnections caps open connections (see connLimiter); 0 means as
	// many as the file-descriptor limit allows. It is lowered, with a
	// warning, when RLIMIT_NOFILE leaves too little room for it.
	MaxConnections int
	// MaxConnectionsPerClient caps the connections of one remote address
	// (0: no cap); addresses in Exempt count toward MaxConnections only.
	MaxConnectionsPerClient int
	Exempt                  []netip.Prefix
	// ReadHeaderTimeout: time allowed for the request headers.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long.
	IdleTimeout time.Duration
}

// Options configure NewServer.
type Options struct {
	Handler http.Handler
	Logger  *slog.Logger
	// Registry receives the connection metrics, named
	// <Namespace>_connections_open and so on.
	Registry  prometheus.Registerer
	Namespace string // "keepproxy", "keepstore"
	Limits    Limits
}

// Server is an http.Server behind a connLimiter: capped header bytes and
// fields, capped connections (global and per client) with idle ones
// reclaimed first, header and idle timeouts. Body timeouts are
// progress-based and handled per request (ProgressBody).
type Server struct {
	http    *http.Server
	limits  Limits
	log     *slog.Logger
	metrics *connMetrics
}

// NewServer checks o and builds a Server; its metrics are registered on
// o.Registry.
func NewServer(o Options) (*Server, error) {
	l := o.Limits
	switch {
	case o.Handler == nil || o.Logger == nil || o.Registry == nil:
		return nil, errors.New("httpserver: Handler, Logger and Registry are required")
	case l.MaxHeaderBytes <= 0 || l.MaxHeaderFields <= 0:
		return nil, errors.New("httpserver: MaxHeaderBytes and MaxHeaderFields must be set")
	case l.ReadHeaderTimeout <= 0 || l.IdleTimeout <= 0:
		return nil, errors.New("httpserver: ReadHeaderTimeout and IdleTimeout must be set")
	case l.MaxConnections < 0 || l.MaxConnectionsPerClient < 0:
		return nil, errors.New("httpserver: connection caps must not be negative")
	}
	l.MaxConnections = fitToFDLimit(l.MaxConnections, o.Logger)
	m, err := newConnMetrics(o.Registry, o.Namespace, l.MaxConnections)
	if err != nil {
		return nil, err
	}
	s := &Server{limits: l, log: o.Logger, metrics: m}
	s.http = &http.Server{
		Handler:           o.Handler,
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		IdleTimeout:       l.IdleTimeout,
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn),
		ConnState:         connState,
	}
	return s, nil
}

// Limits returns the limits in force (MaxConnections possibly lowered to
// fit the file-descriptor limit).
func (s *Server) Limits() Limits { return s.limits }

// Serve accepts connections on ln through a connLimiter until Shutdown or
// Close; it returns http.ErrServerClosed then.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(newConnLimiter(ln, s.limits, s.log, s.metrics))
}

// Shutdown stops accepting, closes idle connections and waits for active
// requests until ctx ends (see http.Server.Shutdown).
func (s *Server) Shutdown(ctx context.Context) error { return s.http.Shutdown(ctx) }

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.http.Close() }

// fdReserve is how many file descriptors are kept out of MaxConnections
// for everything else (connections to the stores, volumes, logs): a
// quarter of the limit, at most 1024.
func fdReserve(limit int) int { return min(1024, limit/4) }

// fitToFDLimit returns max, lowered (with a warning) so that max
// connections plus fdReserve fit in RLIMIT_NOFILE; 0 becomes what fits.
func fitToFDLimit(max int, log *slog.Logger) int {
	limit := fdLimit()
	if limit <= 0 {
		return max
	}
	fit := limit - fdReserve(limit)
	if max == 0 {
		return fit
	}
	if max > fit {
		log.Warn("max_connections lowered to fit the file-descriptor limit (raise ulimit -n to allow more)",
			"max_connections", max, "lowered_to", fit, "nofile_limit", limit)
		return fit
	}
	return max
}
