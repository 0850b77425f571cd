package arvapi

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// endpoint is how the client reached keepgate: scheme, host (without
// brackets) and port, as seen through nginx.
type endpoint struct {
	TLS  bool
	Host string
	Port int
}

// root is the base URL, https://host:port/ (the port left out when it is
// the scheme's default).
func (e endpoint) root() string {
	scheme, def := "http", 80
	if e.TLS {
		scheme, def = "https", 443
	}
	host := e.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if e.Port != def {
		host += ":" + strconv.Itoa(e.Port)
	}
	return scheme + "://" + host + "/"
}

// external works out the endpoint: the Host header names host and port;
// the scheme is X-Forwarded-Proto when the peer is a trusted proxy (nginx
// terminates TLS), else whether this connection is TLS.
func (s *Server) external(r *http.Request) endpoint {
	e := endpoint{TLS: r.TLS != nil}
	if s.trusted(r.RemoteAddr) {
		switch strings.ToLower(strings.TrimSpace(strings.Split(r.Header.Get("X-Forwarded-Proto"), ",")[0])) {
		case "https":
			e.TLS = true
		case "http":
			e.TLS = false
		}
	}
	e.Port = 80
	if e.TLS {
		e.Port = 443
	}
	host := r.Host
	if h, p, err := net.SplitHostPort(host); err == nil {
		host = h
		if n, err := strconv.Atoi(p); err == nil && n > 0 && n < 65536 {
			e.Port = n
		}
	}
	e.Host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return e
}

func (s *Server) trusted(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range s.opt.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
