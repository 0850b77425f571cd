// Package gateway is keepproxy: the internet-facing Keep gateway. It
// authenticates API tokens (Authenticator: token file, remote Arvados API,
// a TTL cache in front), answers CORS preflights before auth, and streams
// block PUTs to several keepstores at once (Put, through a windowed Tee)
// and GETs from the first store that has the block, failing over mid-body
// with Range requests (Open/Block).
//
// Design notes: the only per-request buffer is the Tee window (default
// 4 MiB + one chunk), taken from a byte-weighted Budget; POST / without a
// hash buffers the body, also from the Budget. Routing (which stores a
// block goes to) is a Router (default: the rendezvous order of
// KEEP-PROTOCOL §8.1 over the configured or discovered stores), so storage
// pools and host-based rules can replace it; authentication is an
// Authenticator and usage accounting an Accountant.
package gateway

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/metering"
)

// Options configure a Gateway.
type Options struct {
	Services        []Service
	DefaultReplicas int           // when the client sends no X-Keep-Desired-Replicas (default 2)
	Auth            Authenticator // required
	StoreAdminToken string        // sent to stores for /index (admin callers only); empty: forward the caller's token
	// StoreWriteToken, if set, is sent to the stores on PUT instead of the
	// caller's token (keepstores with write_token_file accept writes only
	// with it). The stores then sign for it, so the gateway re-signs the
	// locator for the caller with BlobSigningKey (required with it).
	StoreWriteToken string
	BlobSigningKey  []byte
	SignatureTTL    time.Duration // of the locators the gateway signs (default 336h, as keepstore)
	Window          int64         // Tee window per PUT (default 4 MiB)
	MemoryBudget    int64         // all buffers together (default 256 MiB)
	BudgetWait      time.Duration // how long a request waits for budget (default 2s)
	// ClientShare is the most of MemoryBudget one principal's requests may
	// hold together (default a quarter of it).
	ClientShare int64
	// StoreSlots caps the GET/HEAD requests in flight toward the stores
	// (default 256); ClientStoreSlots is one principal's share (default a
	// quarter), so clients that never read their bodies cannot take them all.
	StoreSlots, ClientStoreSlots int
	// MinBodyRate: after BodyGrace, an upload averaging fewer bytes per
	// second than this is cut off with 408 (default 16 KiB/s after 30s;
	// a 64 MiB block then has over an hour). It frees what a dripping
	// client holds; the share is what protects everyone else meanwhile.
	MinBodyRate     int64
	BodyGrace       time.Duration
	BodyIdleTimeout time.Duration // a client body stalled this long is cut off (default 60s)
	UpstreamIdle    time.Duration // a store that stops reading this long is dropped (default 60s)
	// VerifyPuts makes the gateway hash PUT bodies itself and withhold the
	// last chunk from the stores on a mismatch. Off by default: every Keep
	// store (keepgate's and Arvados') refuses a body that does not hash to
	// its URL before committing it, so this only duplicates that check at
	// the cost of one MD5 pass per block; turn it on for stores you do not
	// trust to verify.
	VerifyPuts      bool
	ManagementToken string // guards /metrics and /_health/ping; empty: metrics open, ping disabled
	TrustedProxies  []netip.Prefix
	Logger          *slog.Logger
	Registry        *prometheus.Registry
	Transport       http.RoundTripper // toward the stores; nil: a tuned default
	// UploaderFS, if set, is served at /_upload/ (the web uploader).
	UploaderFS http.FileSystem
	// API, if set, serves the Arvados API (package arvapi) under
	// /arvados/v1/ and /discovery/v1/.
	API http.Handler
	// Router picks stores per block; nil: by storage when Storages are
	// given (StorageRouter), else rendezvous over Services.
	Router Router
	// Storages: the named pools principals are bound to; DefaultStorage
	// is the one token-file and API principals use. None: one implicit
	// storage, ImplicitStorage, of every store in Services.
	Storages       []Storage
	DefaultStorage string
	// Rules route by the name the client connected to; UnknownHost is
	// the name of the rule for other names ("" or "reject": 421). None:
	// one implicit rule. SetRules replaces them later (SIGHUP).
	Rules       []Rule
	UnknownHost string
	// Meter admits transfers before they start and records each one
	// after it ended (usage, limits, the audit log); nil: admit all,
	// record nothing.
	Meter *metering.Meter
	// ProxyID names this keepproxy in transfer records (default: the
	// host name).
	ProxyID string
}

// Gateway is the keepproxy service.
type Gateway struct {
	opt          Options
	rendezvous   *RendezvousRouter
	router       Router
	meter        *metering.Meter
	rules        atomic.Pointer[ruleSet] // nil: no rules
	auth         Authenticator
	up           *upstream
	budget       *Budget            // bytes of buffer memory
	slots        *Budget            // GET/HEAD requests in flight toward the stores
	signer       *blockstore.Signer // nil: locators are the stores' own
	window       int64
	upstreamIdle time.Duration
	log          *slog.Logger
	metrics      *metrics
}

// New builds a Gateway.
func New(opt Options) (*Gateway, error) {
	if opt.Auth == nil {
		return nil, blockstore.Errorf(blockstore.KindInternal, "gateway: no authenticator configured")
	}
	if opt.DefaultReplicas <= 0 {
		opt.DefaultReplicas = 2
	}
	if opt.Window <= 0 {
		opt.Window = 4 << 20
	}
	if opt.MemoryBudget <= 0 {
		opt.MemoryBudget = 256 << 20
	}
	if opt.BudgetWait <= 0 {
		opt.BudgetWait = 2 * time.Second
	}
	if opt.ClientShare <= 0 {
		opt.ClientShare = opt.MemoryBudget / 4
	}
	if opt.StoreSlots <= 0 {
		opt.StoreSlots = 256
	}
	if opt.ClientStoreSlots <= 0 {
		opt.ClientStoreSlots = max(1, opt.StoreSlots/4)
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
	if opt.UpstreamIdle <= 0 {
		opt.UpstreamIdle = 60 * time.Second
	}
	if opt.StoreWriteToken != "" && len(opt.BlobSigningKey) == 0 {
		return nil, blockstore.Errorf(blockstore.KindInternal, "gateway: a store write token needs the blob signing key, to sign locators for the caller")
	}
	if opt.SignatureTTL <= 0 {
		opt.SignatureTTL = 336 * time.Hour
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	g := &Gateway{opt: opt, auth: opt.Auth, up: newUpstream(opt.Transport), window: opt.Window, upstreamIdle: opt.UpstreamIdle, log: opt.Logger}
	if len(opt.BlobSigningKey) > 0 {
		g.signer = &blockstore.Signer{Key: opt.BlobSigningKey, TTL: opt.SignatureTTL}
	}
	g.metrics = newMetrics(opt.Registry)
	if c, ok := opt.Auth.(*Cache); ok && c.Lookups == nil {
		c.Lookups = g.metrics.authLookups.Inc // look-ups that missed the token cache
	}
	g.budget = NewBudget(opt.MemoryBudget, opt.BudgetWait, g.metrics.budgetInUse).SetShare(opt.ClientShare)
	g.slots = NewBudget(int64(opt.StoreSlots), opt.BudgetWait, g.metrics.slotsInUse).SetShare(int64(opt.ClientStoreSlots))
	g.slots.what = "store request slots"
	if len(opt.Storages) == 0 {
		opt.Storages = []Storage{{Name: ImplicitStorage, Stores: opt.Services}}
		opt.DefaultStorage = ImplicitStorage
	}
	g.opt.Storages, g.opt.DefaultStorage = opt.Storages, opt.DefaultStorage
	if len(opt.Services) == 0 { // the union of the storages' stores
		seen := map[string]bool{}
		for _, st := range opt.Storages {
			for _, svc := range st.Stores {
				if !seen[svc.UUID] {
					seen[svc.UUID] = true
					opt.Services = append(opt.Services, svc)
				}
			}
		}
		g.opt.Services = opt.Services
	}
	g.rendezvous = NewRendezvousRouter(opt.Services)
	g.router = opt.Router
	if g.router == nil && len(opt.Storages) == 1 && opt.Storages[0].Name == ImplicitStorage {
		g.router = g.rendezvous // follows SetServices (discovery)
	} else if g.router == nil {
		g.router = NewStorageRouter(opt.Storages, opt.DefaultStorage)
	}
	g.SetRules(opt.Rules, opt.UnknownHost)
	g.meter = opt.Meter
	if g.meter == nil {
		g.meter = &metering.Meter{}
	}
	if g.opt.ProxyID == "" {
		g.opt.ProxyID, _ = os.Hostname()
	}
	g.up.via = viaOf(g.opt.ProxyID)
	return g, nil
}

// SetServices replaces the store list (e.g. after discovery).
func (g *Gateway) SetServices(s []Service) { g.rendezvous.SetServices(s) }

// Services returns the current store list (used for /index).
func (g *Gateway) Services() []Service { return g.rendezvous.Services() }

func (g *Gateway) readOrder(h blockstore.Hash) []Service {
	return g.router.Route(context.Background(), RouteRequest{Hash: h})
}

type metrics struct {
	requests         *prometheus.CounterVec
	bytesIn          prometheus.Counter
	bytesOut         prometheus.Counter
	bytesSpliced     prometheus.Counter
	upstreamAttempts *prometheus.CounterVec
	upstreamFailures *prometheus.CounterVec
	shortfalls       prometheus.Counter
	budgetInUse      prometheus.Gauge
	slotsInUse       prometheus.Gauge
	corrupt          prometheus.Counter
	authLookups      prometheus.Counter
	blocksPut        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepproxy", Name: "requests_total", Help: "Requests by method and status code."}, []string{"method", "code"}),
		bytesIn:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "received_bytes_total", Help: "Block bytes received from clients."}),
		bytesOut:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "sent_bytes_total", Help: "Block bytes sent to clients."}),
		bytesSpliced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "spliced_bytes_total", Help: "Block bytes sent to clients straight from a store's connection (splice(2)) instead of copied through keepproxy's memory (a part of sent_bytes_total)."}),
		upstreamAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepproxy", Name: "upstream_attempts_total", Help: "Requests sent to keep stores."},
			[]string{"store", "method"}),
		upstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepproxy", Name: "upstream_failures_total", Help: "Failed requests to keep stores (404 excluded)."},
			[]string{"store", "method"}),
		shortfalls:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "replica_shortfalls_total", Help: "PUTs that stored fewer replicas than asked for."}),
		budgetInUse: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepproxy", Name: "buffer_budget_in_use_bytes", Help: "Bytes of the memory budget held by requests."}),
		slotsInUse:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepproxy", Name: "store_slots_in_use", Help: "GET/HEAD requests in flight toward the stores."}),
		corrupt:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "corrupt_reads_total", Help: "Block reads whose bytes did not match the hash."}),
		authLookups: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "auth_lookups_total", Help: "Token look-ups that missed the cache."}),
		blocksPut:   prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "blocks_stored_total", Help: "Blocks stored through this proxy (PUT or POST answered 200)."}),
	}
	reg.MustRegister(m.requests, m.bytesIn, m.bytesOut, m.bytesSpliced, m.upstreamAttempts, m.upstreamFailures, m.shortfalls, m.budgetInUse, m.slotsInUse, m.corrupt, m.authLookups, m.blocksPut)
	return m
}
