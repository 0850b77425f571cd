package nodehttp

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/felixge/httpsnoop"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// allowNetworks refuses clients outside the allowed networks (403).
func (a *api) allowNetworks(next http.Handler) http.Handler {
	allowed := a.o.AllowedNetworks
	if len(allowed) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ip := httpserver.ClientIP(r); !addrIn(ip, allowed) {
			a.fail(w, r, blockstore.Errorf(blockstore.KindForbidden, "Forbidden: client address %s is not in this keepstore's allowed_networks", ip))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func addrIn(s string, prefixes []netip.Prefix) bool {
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return false
	}
	addr = addr.WithZone("").Unmap()
	for _, p := range prefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// limit takes one of the node's request slots (node.AdmitRequest) for
// every request but health, metrics and status: 503 + Retry-After when
// none is free within BudgetWait.
func (a *api) limit(next http.Handler) http.Handler {
	if a.cfg.MaxConcurrentRequests <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/metrics" || p == "/status.json" || strings.HasPrefix(p, "/_health/") {
			next.ServeHTTP(w, r)
			return
		}
		release, err := a.n.AdmitRequest(r.Context())
		if err != nil {
			a.fail(w, r, err)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}

// metrics are the HTTP request metrics (namespace "keepstore").
type metrics struct {
	requests *prometheus.CounterVec // method, code
	inFlight prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	const ns = "keepstore"
	return &metrics{
		requests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "requests_total",
			Help: "HTTP requests served, by method and status code."}, []string{"method", "code"})),
		inFlight: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "requests_in_flight",
			Help: "HTTP requests being served."})),
	}
}

// register registers c on reg and returns it, or the same collector that
// another handler of the node registered before; any other failure panics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	var dup prometheus.AlreadyRegisteredError
	if errors.As(err, &dup) {
		if existing, ok := dup.ExistingCollector.(C); ok {
			return existing
		}
	}
	if err != nil {
		panic("nodehttp: " + err.Error())
	}
	return c
}

// instrument counts requests by method and status, and those in flight.
func (a *api) instrument(next http.Handler) http.Handler {
	m := a.m
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		snoop := httpsnoop.CaptureMetrics(next, w, r)
		m.requests.WithLabelValues(methodLabel(r.Method), strconv.Itoa(snoop.Code)).Inc()
	})
}

func methodLabel(m string) string {
	switch m {
	case "GET", "HEAD", "PUT", "DELETE", "TOUCH", "OPTIONS", "POST":
		return m
	}
	return "other"
}
