// Package gatewayapi is keepproxy's HTTP side, in front of the data plane
// (package gateway): the routes, and around them request ids, client
// addresses, the access log, the forwarding rule of the Host (421 for
// unknown names), CORS, and metering. Each block route is a thin handler:
// parse and resolve the request (loop guard, locator, Range or
// Content-Length, the principal through an access.Authenticator, the
// rule's and the storage's say, the budgets' and the meter's admission),
// make one call to the gateway (Put, Open), and write the answer or the
// error (its blockstore.Kind decides the status: httpserver.WriteError).
// It also serves /index, the health check, /metrics, the web uploader,
// and the gateway's side of the Arvados API (APICaller).
package gatewayapi

import (
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
)

// Options configure a Server: the data plane's options (passed to
// gateway.New; Logger, Registry and ProxyID are shared) and the HTTP
// side's.
type Options struct {
	gateway.Options
	DefaultReplicas int                  // when the client sends no X-Keep-Desired-Replicas (default 2)
	Auth            access.Authenticator // required
	// MinBodyRate: after BodyGrace, an upload averaging fewer bytes per
	// second than this is cut off with 408 (default 16 KiB/s after 30s;
	// a 64 MiB block then has over an hour). It frees what a dripping
	// client holds; the share is what protects everyone else meanwhile.
	MinBodyRate     int64
	BodyGrace       time.Duration
	BodyIdleTimeout time.Duration // a client body stalled this long is cut off (default 60s)
	ManagementToken string        // guards /metrics and /_health/ping; empty: metrics open, ping disabled
	TrustedProxies  []netip.Prefix
	// UploaderFS, if set, is served at /_upload/ (the web uploader).
	UploaderFS http.FileSystem
	// API, if set, serves the Arvados API (package arvapi) under
	// /arvados/v1/ and /discovery/v1/.
	API http.Handler
	// Rules route by the name the client connected to; UnknownHost is
	// the name of the rule for other names ("" or "reject": 421). None:
	// one implicit rule. SetRules replaces them later (SIGHUP).
	Rules       []placement.Rule
	UnknownHost string
	// Meter admits transfers before they start and records each one
	// after it ended (usage, limits, the audit log); nil: admit all,
	// record nothing.
	Meter *metering.Meter
}

// Server is keepproxy's HTTP side over one gateway.
type Server struct {
	opt     Options
	gw      *gateway.Gateway
	auth    access.Authenticator
	meter   *metering.Meter
	rules   atomic.Pointer[placement.RuleSet] // nil: no rules
	log     *slog.Logger
	metrics *metrics
}

// New builds the gateway of opt.Options and the HTTP side over it.
func New(opt Options) (*Server, error) {
	if opt.Auth == nil {
		return nil, blockstore.Errorf(blockstore.KindInternal, "gateway: no authenticator configured")
	}
	if opt.DefaultReplicas <= 0 {
		opt.DefaultReplicas = 2
	}
	if opt.MinBodyRate <= 0 {
		opt.MinBodyRate = 16 << 10
	}
	if opt.BodyGrace <= 0 {
		opt.BodyGrace = 30 * time.Second
	}
	if opt.BodyIdleTimeout <= 0 {
		opt.BodyIdleTimeout = 60 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	if opt.ProxyID == "" {
		opt.ProxyID, _ = os.Hostname()
	}
	gw, err := gateway.New(opt.Options)
	if err != nil {
		return nil, err
	}
	s := &Server{opt: opt, gw: gw, auth: opt.Auth, meter: opt.Meter, log: opt.Logger}
	if s.meter == nil {
		s.meter = &metering.Meter{}
	}
	s.metrics = newMetrics(opt.Registry, gw.CorruptReads())
	if c, ok := opt.Auth.(*access.Cache); ok && c.Lookups == nil {
		c.Lookups = s.metrics.authLookups.Inc // look-ups that missed the token cache
	}
	s.SetRules(opt.Rules, opt.UnknownHost)
	return s, nil
}

// Gateway is the data plane the server is in front of (its store list:
// Services, SetServices).
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

type metrics struct {
	requests    *prometheus.CounterVec
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	authLookups prometheus.Counter
	blocksPut   prometheus.Counter
	corrupt     prometheus.Counter // the gateway's (gateway.CorruptReads)
}

func newMetrics(reg prometheus.Registerer, corrupt prometheus.Counter) *metrics {
	m := &metrics{
		requests:    prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepproxy", Name: "requests_total", Help: "Requests by method and status code."}, []string{"method", "code"}),
		bytesIn:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "received_bytes_total", Help: "Block bytes received from clients."}),
		bytesOut:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "sent_bytes_total", Help: "Block bytes sent to clients."}),
		authLookups: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "auth_lookups_total", Help: "Token look-ups that missed the cache."}),
		blocksPut:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "blocks_stored_total", Help: "Blocks stored through this proxy (PUT or POST answered 200)."}),
		corrupt:     corrupt,
	}
	reg.MustRegister(m.requests, m.bytesIn, m.bytesOut, m.authLookups, m.blocksPut)
	return m
}
