// Package gateway is keepproxy's data plane: it streams a block PUT to
// several keepstores at once (Put, through a windowed Tee that hashes MD5
// once and computes the chunk checksums) and reads a GET from the first
// store that has the block, failing over mid-body with Range requests
// (Open, Block). It holds the stores' HTTP client (plain, unix-socket and
// upstream-gateway stores; the one classifier of a store's answer), the
// byte-weighted Budget every buffer is paid from, a principal's share of
// it, and the signatures of the locators it hands out. Which stores a
// block goes to is a placement.Router's decision; who the caller is, is
// access's; the HTTP side (routes, rules, CORS, metering, limits) is
// package gatewayapi (gateway/api), which calls the methods documented as
// its contract here.
//
// Design notes: the only per-request buffer is the Tee window (default
// 4 MiB + one chunk), taken from the Budget; a POST without a hash
// buffers the body (ReadPost), also from the Budget.
package gateway

import (
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/placement"
)

// Options configure a Gateway.
type Options struct {
	Services        []placement.Service
	StoreAdminToken string // sent to stores for /index (admin callers only); empty: forward the caller's token
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
	UpstreamIdle                 time.Duration // a store that stops reading this long is dropped (default 60s)
	// VerifyPuts makes the gateway hash PUT bodies itself and withhold the
	// last chunk from the stores on a mismatch. Off by default: every Keep
	// store (keepgate's and Arvados') refuses a body that does not hash to
	// its URL before committing it, so this only duplicates that check at
	// the cost of one MD5 pass per block; turn it on for stores you do not
	// trust to verify.
	VerifyPuts bool
	Logger     *slog.Logger
	Registry   *prometheus.Registry
	Transport  http.RoundTripper // toward the stores; nil: a tuned default
	// Router picks stores per block; nil: by storage when Storages are
	// given (placement.StorageRouter), else rendezvous over Services.
	Router placement.Router
	// Storages: the named pools principals are bound to; DefaultStorage
	// is the one token-file and API principals use. None: one implicit
	// storage, placement.ImplicitStorage, of every store in Services.
	Storages       []placement.Storage
	DefaultStorage string
	// ProxyID names this keepproxy toward upstream gateways (Via) and in
	// transfer records (default: the host name).
	ProxyID string
}

// Gateway is keepproxy's data plane.
type Gateway struct {
	opt          Options
	rendezvous   *placement.RendezvousRouter
	router       placement.Router
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
	g := &Gateway{opt: opt, up: newUpstream(opt.Transport), window: opt.Window, upstreamIdle: opt.UpstreamIdle, log: opt.Logger}
	if len(opt.BlobSigningKey) > 0 {
		g.signer = &blockstore.Signer{Key: opt.BlobSigningKey, TTL: opt.SignatureTTL}
	}
	g.metrics = newMetrics(opt.Registry)
	g.budget = NewBudget(opt.MemoryBudget, opt.BudgetWait, g.metrics.budgetInUse).SetShare(opt.ClientShare)
	g.slots = NewBudget(int64(opt.StoreSlots), opt.BudgetWait, g.metrics.slotsInUse).SetShare(int64(opt.ClientStoreSlots))
	g.slots.what = "store request slots"
	if len(opt.Storages) == 0 {
		opt.Storages = []placement.Storage{{Name: placement.ImplicitStorage, Stores: opt.Services}}
		opt.DefaultStorage = placement.ImplicitStorage
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
	g.rendezvous = placement.NewRendezvousRouter(opt.Services)
	g.router = opt.Router
	if g.router == nil && len(opt.Storages) == 1 && opt.Storages[0].Name == placement.ImplicitStorage {
		g.router = g.rendezvous // follows SetServices (discovery)
	} else if g.router == nil {
		g.router = placement.NewStorageRouter(opt.Storages, opt.DefaultStorage)
	}
	if g.opt.ProxyID == "" {
		g.opt.ProxyID, _ = os.Hostname()
	}
	g.up.via = viaOf(g.opt.ProxyID)
	return g, nil
}

// SetServices replaces the store list (e.g. after discovery).
func (g *Gateway) SetServices(s []placement.Service) { g.rendezvous.SetServices(s) }

// Services returns the current store list (the stores /index lists).
func (g *Gateway) Services() []placement.Service { return g.rendezvous.Services() }

type metrics struct {
	bytesSpliced     prometheus.Counter
	upstreamAttempts *prometheus.CounterVec
	upstreamFailures *prometheus.CounterVec
	shortfalls       prometheus.Counter
	budgetInUse      prometheus.Gauge
	slotsInUse       prometheus.Gauge
	corrupt          prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		bytesSpliced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "spliced_bytes_total", Help: "Block bytes sent to clients straight from a store's connection (splice(2)) instead of copied through keepproxy's memory (a part of sent_bytes_total)."}),
		upstreamAttempts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepproxy", Name: "upstream_attempts_total", Help: "Requests sent to keep stores."},
			[]string{"store", "method"}),
		upstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "keepproxy", Name: "upstream_failures_total", Help: "Failed requests to keep stores (404 excluded)."},
			[]string{"store", "method"}),
		shortfalls:  prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "replica_shortfalls_total", Help: "PUTs that stored fewer replicas than asked for."}),
		budgetInUse: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepproxy", Name: "buffer_budget_in_use_bytes", Help: "Bytes of the memory budget held by requests."}),
		slotsInUse:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "keepproxy", Name: "store_slots_in_use", Help: "GET/HEAD requests in flight toward the stores."}),
		corrupt:     prometheus.NewCounter(prometheus.CounterOpts{Namespace: "keepproxy", Name: "corrupt_reads_total", Help: "Block reads whose bytes did not match the hash."}),
	}
	reg.MustRegister(m.bytesSpliced, m.upstreamAttempts, m.upstreamFailures, m.shortfalls, m.budgetInUse, m.slotsInUse, m.corrupt)
	return m
}
