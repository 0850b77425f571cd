// Package nodehttp is the HTTP API of a keepstore (blockstore/node): the
// keepstore routes of KEEP-PROTOCOL §5.1 (block GET/HEAD/PUT/TOUCH/DELETE,
// untrash, index, mounts, trash list, checksum scan), Range reads,
// /status.json, /_health/ping and /metrics, and the middleware around them.
//
// Each handler parses its request, makes one call into the node, and
// writes the answer or fails through fail, the one path from an error's
// blockstore.Kind to a status (httpserver.WriteError).
//
// Design decisions, where the protocol leaves a choice or where we differ
// from Arvados on purpose:
//   - No CORS. Anything that is not a route, OPTIONS (a CORS preflight)
//     included, is 400 "Bad Request": browsers talk to keepproxy, and a
//     web page must not be able to use a browser on the LAN to reach the
//     stores.
//   - Admin endpoints refuse every request when no admin token is
//     configured (Arvados leaves them open).
//   - A malformed or multi-range Range header is ignored (the whole block
//     is served); a range starting at or past the end is 416 with
//     "Content-Range: bytes */SIZE".
package nodehttp

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/gorilla/mux"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// Options are the policies of a node's HTTP API.
type Options struct {
	// AdminToken guards the admin endpoints; empty refuses them all.
	AdminToken string
	// ManagementToken guards /_health/ping (404 when empty), /metrics and
	// /status.json (open when empty).
	ManagementToken string
	// BodyIdleTimeout: a PUT body that stalls this long is abandoned (408);
	// a GET client that stops reading this long is cut off. 0: no limit.
	BodyIdleTimeout time.Duration
	// AllowedNetworks: clients outside these get 403. Nil: everyone.
	AllowedNetworks []netip.Prefix
	// TrustedProxies may tell the client address in X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// WriteToken, if set, is required to store blocks: PUT is accepted
	// only with "Authorization: Bearer <WriteToken>" (or the admin
	// token); 401 without a token, 403 with another one, before the body
	// is read. The locator is signed, as always, for the token the
	// request carried. Every other write already needs the admin token.
	// Empty: anyone in the allowed networks may write (as with Arvados).
	// A PUT with the write token may carry keepwire.ChunkChecksums.
	WriteToken string
}

// New returns n's HTTP API with o applied. Around the routes: request
// ids, the client address (Options.TrustedProxies), one access-log
// line per request, request metrics (keepstore_requests_total by method
// and code, keepstore_requests_in_flight, registered on the node's
// Registry and shared by every handler of the node), the allowed networks
// (403) and the node's concurrent-request cap (503; health, metrics and
// status excepted). It panics if the Registry holds other collectors
// under the request metrics' names.
func New(n *node.Node, o Options) http.Handler {
	a := &api{n: n, o: o, cfg: n.Options()}
	a.m = newMetrics(a.cfg.Registry)
	var h http.Handler = a.router()
	h = a.limit(h)
	h = a.allowNetworks(h)
	h = a.instrument(h)
	h = httpserver.WithAccessLog(a.cfg.Logger, h)
	h = httpserver.WithClientIP(a.o.TrustedProxies, h)
	return httpserver.WithRequestID(h)
}

// api is one handler of a node.
type api struct {
	n   *node.Node
	o   Options
	cfg node.Options
	m   *metrics
}

func (a *api) router() http.Handler {
	r := mux.NewRouter().SkipClean(true)
	bad := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, blockstore.Errorf(blockstore.KindBadRequest, "Bad Request"))
	})
	r.NotFoundHandler, r.MethodNotAllowedHandler = bad, bad
	const block = "/{locator:[0-9a-f]{32}.*}"
	r.HandleFunc(block, a.get).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/"+block, a.get).Methods(http.MethodGet, http.MethodHead)
	r.Handle(block, a.writer(a.put)).Methods(http.MethodPut)
	r.Handle(block, a.admin(a.touch)).Methods("TOUCH")
	r.Handle(block, a.admin(a.trash)).Methods(http.MethodDelete)
	r.Handle("/untrash/{locator}", a.admin(a.untrash)).Methods(http.MethodPut)
	index := a.admin(gzhttp.GzipHandler(http.HandlerFunc(a.index)).ServeHTTP)
	for _, p := range []string{"/index", "/index/{prefix}", "/mounts/{uuid}/blocks", "/mounts/{uuid}/blocks/{prefix}"} {
		r.Handle(p, index).Methods(http.MethodGet)
	}
	r.Handle("/mounts", a.admin(a.mounts)).Methods(http.MethodGet)
	r.Handle("/trash", a.admin(a.trashList)).Methods(http.MethodPut)
	r.Handle("/checksums", a.admin(a.scanStatus)).Methods(http.MethodGet)
	r.Handle("/checksums", a.admin(a.startScan)).Methods(http.MethodPost)
	r.Handle("/checksums", a.admin(a.stopScan)).Methods(http.MethodDelete)
	r.Handle("/status.json", a.management(a.status)).Methods(http.MethodGet)
	r.HandleFunc("/_health/ping", a.health).Methods(http.MethodGet)
	r.Handle("/metrics", a.management(promhttp.HandlerFor(a.cfg.Registry, promhttp.HandlerOpts{}).ServeHTTP)).Methods(http.MethodGet)
	return r
}
