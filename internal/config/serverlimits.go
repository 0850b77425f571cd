package config

import "time"

// ServerLimits are the connection-level limits of a service's HTTP
// listener, shared by keepproxy and keepstore (embedded in both configs,
// so the keys sit at the top level). Each service has its own defaults
// (DefaultKeepproxy, DefaultKeepstore); internal/httpserver applies them.
type ServerLimits struct {
	// MaxHeaderBytes caps the request line plus headers of one request;
	// more is answered 431 before any authentication. Keep requests need
	// a few KiB (a token, a signed locator, browser cookies).
	MaxHeaderBytes ByteSize `mapstructure:"max_header_bytes"`
	// MaxHeaderFields caps the number of header lines of one request
	// (431 beyond): many tiny headers cost far more memory than their
	// bytes (a map entry each).
	MaxHeaderFields int `mapstructure:"max_header_fields"`
	// MaxConnections caps the open client connections. Near the cap the
	// longest-idle keep-alive connections are closed to make room; at the
	// cap with none idle, new connections get a minimal 503 and are
	// closed. It is lowered at start if the file-descriptor limit
	// (ulimit -n) is too small for it.
	MaxConnections int `mapstructure:"max_connections"`
	// MaxConnectionsPerClient caps the connections of one client address
	// (0: no per-client cap). Peers in trusted_proxies are exempt (they
	// count toward MaxConnections only).
	MaxConnectionsPerClient int `mapstructure:"max_connections_per_client"`
	// IdleTimeout closes a keep-alive connection that has been idle this
	// long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// RequestHeaderTimeout: time allowed to send the request headers.
	RequestHeaderTimeout time.Duration `mapstructure:"request_header_timeout"`
}

// validate reports the problems of l through bad.
func (l *ServerLimits) validate(bad func(string, ...any)) {
	if l.MaxHeaderBytes < 4<<10 || l.MaxHeaderBytes > 1<<20 {
		bad("max_header_bytes %s: must be between 4KiB and 1MiB", l.MaxHeaderBytes)
	}
	if l.MaxHeaderFields < 16 || l.MaxHeaderFields > 10000 {
		bad("max_header_fields %d: must be between 16 and 10000", l.MaxHeaderFields)
	}
	if l.MaxConnections < 16 {
		bad("max_connections %d: must be at least 16", l.MaxConnections)
	}
	if l.MaxConnectionsPerClient < 0 {
		bad("max_connections_per_client %d: must be 0 (no per-client cap) or positive", l.MaxConnectionsPerClient)
	}
	if l.MaxConnectionsPerClient > l.MaxConnections {
		bad("max_connections_per_client %d: more than max_connections %d", l.MaxConnectionsPerClient, l.MaxConnections)
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"idle_timeout", l.IdleTimeout}, {"request_header_timeout", l.RequestHeaderTimeout}} {
		if d.v <= 0 {
			bad("%s %v: must be positive", d.k, d.v)
		}
	}
}
