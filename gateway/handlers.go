package gateway

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/felixge/httpsnoop"
	"github.com/gorilla/mux"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/cors"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/metering"
)

// copyBufSize is the GET copy buffer, paid from the memory budget.
const copyBufSize = 256 << 10

var copyBufs = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

// Handler returns the HTTP handler: request ids, real client address,
// access log, metrics, CORS, then the routes.
func (g *Gateway) Handler() http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true)
	r.UseEncodedPath()
	blockPath := "/{locator:[0-9a-f]{32}(?:\\+[^/]*)?}"
	r.Methods(http.MethodOptions).HandlerFunc(g.handleOptions)
	r.Path(blockPath).Methods(http.MethodGet, http.MethodHead).Handler(g.metered("", g.handleGet))
	r.Path(blockPath).Methods(http.MethodPut).Handler(g.metered("put", g.handlePut))
	r.Path("/").Methods(http.MethodPost).Handler(g.metered("post", g.handlePost))
	index := gzhttp.GzipHandler(g.metered("index", g.handleIndex))
	r.Path("/index").Methods(http.MethodGet).Handler(index)
	r.Path("/index/{prefix:[0-9a-f]{0,32}}").Methods(http.MethodGet).Handler(index)
	r.Path("/_health/{check}").Methods(http.MethodGet).HandlerFunc(g.handleHealth)
	r.Path("/metrics").Methods(http.MethodGet).Handler(g.guardManagement(promhttp.HandlerFor(g.opt.Registry, promhttp.HandlerOpts{})))
	if g.opt.UploaderFS != nil {
		r.PathPrefix("/_upload/").Methods(http.MethodGet, http.MethodHead).Handler(gzhttp.GzipHandler(http.StripPrefix("/_upload/", http.FileServer(g.opt.UploaderFS))))
		r.Path("/_upload").Handler(http.RedirectHandler("/_upload/", http.StatusMovedPermanently))
	}
	if g.opt.API != nil {
		r.PathPrefix("/arvados/v1/").Handler(g.opt.API)
		r.PathPrefix("/discovery/v1/").Handler(g.opt.API)
	}
	bad := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpserver.WriteError(w, blockstore.Errorf(blockstore.KindBadRequest, "Bad request: unknown path or method"))
	})
	r.NotFoundHandler, r.MethodNotAllowedHandler = bad, bad

	c := cors.New(cors.Options{
		AllowedOrigins:     []string{"*"},
		AllowedMethods:     strings.Split(keepwire.CORSAllowMethods, ", "),
		AllowedHeaders:     strings.Split(keepwire.CORSAllowHeaders, ", "),
		ExposedHeaders:     strings.Split(keepwire.CORSExposeHeaders, ", "),
		MaxAge:             keepwire.CORSMaxAgeSeconds,
		OptionsPassthrough: true, // our OPTIONS handler answers with the exact §7 values
		// A rule's cors_origins narrow the grant (staticCORS has the say).
		AllowOriginVaryRequestFunc: func(r *http.Request, origin string) (bool, []string) {
			return corsAllowed(r, origin), []string{"Origin"}
		},
	})
	var h http.Handler = c.Handler(staticCORS(r))
	h = g.withRule(h) // before CORS and authentication: 421 for unknown names
	h = g.countRequests(h)
	h = httpserver.WithAccessLog(g.log, h)
	h = httpserver.WithClientIP(g.opt.TrustedProxies, h)
	return httpserver.WithRequestID(h)
}

// staticCORS sets the §7 headers on every response, whether or not the
// request carried an Origin (Arvados clients and tests expect them always).
// Through a rule with cors_origins, only those origins get a grant (the
// origin echoed, Vary: Origin); other requests get no CORS header at all.
func staticCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if rule := ruleFrom(r.Context()); rule != nil && len(rule.CORSOrigins) > 0 {
			for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Access-Control-Allow-Credentials"} {
				h.Del(k)
			}
			h.Add("Vary", "Origin")
			origin := r.Header.Get("Origin")
			if origin == "" || !corsAllowed(r, origin) {
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
		} else {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		h.Set("Access-Control-Allow-Methods", keepwire.CORSAllowMethods)
		h.Set("Access-Control-Allow-Headers", keepwire.CORSAllowHeaders)
		h.Set("Access-Control-Expose-Headers", keepwire.CORSExposeHeaders)
		h.Set("Access-Control-Max-Age", keepwire.CORSMaxAge)
		next.ServeHTTP(w, r)
	})
}

func (g *Gateway) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := httpsnoop.CaptureMetrics(next, w, r)
		g.metrics.requests.WithLabelValues(r.Method, strconv.Itoa(m.Code)).Inc()
	})
}

func (g *Gateway) handleOptions(w http.ResponseWriter, r *http.Request) {
	staticCORS(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})).ServeHTTP(w, r)
}

// authorize checks the loop guard and the token's scope. It returns the
// token to forward to the stores and who it belongs to.
func (g *Gateway) authorize(r *http.Request, scope Scope) (string, *Identity, error) {
	if g.isLoop(r) {
		return "", nil, blockstore.Errorf(blockstore.KindLoop, "loop detected: this request already passed through a keepproxy")
	}
	// Bearer/OAuth2 tokens as they are; Basic id:secret as the access
	// key token v2/id/secret.
	token, err := access.FromAuthorization(r.Header.Get("Authorization"))
	if err != nil || token == "" {
		return "", nil, ErrBadToken
	}
	id, err := g.auth.Authenticate(r.Context(), token)
	if err != nil {
		if id = g.passThrough(r, token, err); id == nil {
			return "", nil, err
		}
	}
	if id, err = applyRule(r, id); err != nil {
		return "", nil, err
	}
	t := metering.From(r.Context())
	t.PrincipalKind, t.PrincipalID, t.NoAudit = id.Source, id.Name, id.NoAudit
	if id.Storage != "" {
		t.Storage = id.Storage
	} else {
		t.Storage = g.opt.DefaultStorage
	}
	if !id.Has(scope) {
		return "", nil, &blockstore.Error{Kind: blockstore.KindForbidden, Msg: fmt.Sprintf("token %q may not %s (scopes: %v)", id.Name, scope, id.Scopes)}
	}
	return token, id, nil
}

func (g *Gateway) handleGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Via", "HTTP/1.1 keepproxy")
	req, release, err := g.resolveGet(r)
	defer release()
	switch {
	case err != nil:
		g.fail(w, r, err)
	case req.Locator.Hash == blockstore.EmptyHash: // needs no store
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	default:
		g.serveBlock(w, r, req)
	}
}

// writeGetError answers a failed GET; a 416 names the block's size in
// "Content-Range: bytes */SIZE" (RFC 9110 §15.5.17).
func writeGetError(w http.ResponseWriter, err error) {
	var re *RangeError
	if errors.As(err, &re) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", re.Size))
	}
	httpserver.WriteError(w, err)
}

func (g *Gateway) parseGet(r *http.Request) (GetRequest, error) {
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	if err != nil {
		return GetRequest{}, err
	}
	req := GetRequest{Locator: loc, Head: r.Method == http.MethodHead}
	if rh := r.Header.Get("Range"); rh != "" && !req.Head {
		if req.Range, err = keepwire.ParseRange(rh); err != nil {
			return req, err
		}
		if req.Range.From < 0 { // suffix range: needs the size hint
			if !loc.HasSize() {
				return req, blockstore.Errorf(blockstore.KindBadRange, "a suffix Range needs a locator with a size hint")
			}
			req.Range.From = max(0, loc.Size+req.Range.From)
		}
	}
	return req, nil
}

// writeBlock sends an opened block: headers first, then the verified body.
// It returns the bytes sent and the status (502 when the body was cut
// short after the headers went out; the caller then aborts the response).
func (g *Gateway) writeBlock(w http.ResponseWriter, r *http.Request, blk *Block, head bool) (int64, int) {
	h := w.Header()
	h.Set("Content-Length", strconv.FormatInt(blk.Length, 10))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	if blk.trusted {
		// Relaying a store's chunk-by-chunk promise: a keepgate in front
		// of this one (an upstream storage) need not hash the bytes again.
		h.Set(keepwire.DataVerified, keepwire.VerifiedChunks)
	}
	status := http.StatusOK
	if blk.Partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", blk.Offset, blk.Offset+blk.Length-1, blk.Size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if head {
		return 0, status
	}
	n, err := g.copyBlock(w, r, blk)
	g.metrics.bytesOut.Add(float64(n))
	if err != nil {
		if k := blockstore.KindOf(err); k == blockstore.KindHashMismatch || k == blockstore.KindCorrupt {
			g.metrics.corrupt.Inc()
			g.log.Error("block data did not match its hash; response cut short", "request_id", httpserver.RequestIDFrom(r.Context()), "block", blk.req.Locator.Hash.String())
		} else {
			g.log.Warn("block response cut short", "request_id", httpserver.RequestIDFrom(r.Context()), "sent", n, "error", err.Error())
		}
		return n, http.StatusBadGateway
	}
	return n, status
}

// copyBlock sends the block's bytes: spliced from the store's connection
// when nothing needs to see them (splice.go), copied through a budgeted
// 256 KiB buffer otherwise.
func (g *Gateway) copyBlock(w http.ResponseWriter, r *http.Request, blk *Block) (int64, error) {
	pacer := metering.From(r.Context()).Out
	if blk.canSplice(r, pacer != nil) {
		extend, clear := deadlineExtender(w, g.opt.BodyIdleTimeout)
		defer clear()
		return blk.spliceTo(w, extend)
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	// progressWriter also hides the ResponseWriter's ReadFrom, which would
	// copy in 32 KiB pieces instead of our 256 KiB buffer.
	pw := newProgressWriter(w, g.opt.BodyIdleTimeout)
	defer pw.clear()
	return io.CopyBuffer(pacedOutput(r.Context(), pw, pacer), blk, *buf)
}

func (g *Gateway) handlePut(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Via", "HTTP/1.1 keepproxy")
	req, release, err := g.resolvePut(r)
	defer release()
	if err != nil {
		g.fail(w, r, err)
		return
	}
	body := httpserver.ProgressBody(w, r, g.opt.BodyIdleTimeout)
	req.Body = pacedBody(r.Context(), newMinRateReader(body, g.opt.MinBodyRate, g.opt.BodyGrace), metering.From(r.Context()).In)
	res, err := g.Put(r.Context(), req)
	g.metrics.bytesIn.Add(float64(body.N))
	metering.From(r.Context()).BytesIn = body.N
	g.writePutResult(w, r, req, res, err)
}

// noteRequest puts what a PUT or POST asks for on its transfer.
func noteRequest(r *http.Request, req PutRequest) {
	t := metering.From(r.Context())
	t.ClassesAsked, t.ReplicasWanted = req.Classes, req.Replicas
	if r.Method == http.MethodPut {
		t.Block = fmt.Sprintf("%s+%d", req.Hash, req.Size)
	}
}

// parsePut applies the checks that come before authentication, in the
// order of KEEP-PROTOCOL §6.4: loop, Content-Length (411), locator (400),
// size hint vs Content-Length (400).
func (g *Gateway) parsePut(r *http.Request) (PutRequest, error) {
	if g.isLoop(r) {
		return PutRequest{}, blockstore.Errorf(blockstore.KindLoop, "loop detected: this request already passed through a keepproxy")
	}
	if r.ContentLength < 0 {
		return PutRequest{}, blockstore.Errorf(blockstore.KindLengthRequired, "Length Required: send a Content-Length header (chunked uploads are not accepted)")
	}
	req := PutRequest{Size: r.ContentLength, Replicas: g.opt.DefaultReplicas, Classes: httpserver.ParseClasses(r.Header.Get(keepwire.StorageClasses))}
	req.Replicas = keepwire.ParseDesiredReplicas(r.Header.Get(keepwire.DesiredReplicas), g.opt.DefaultReplicas)
	if r.Method == http.MethodPost {
		return req, nil
	}
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	if err != nil {
		return req, err
	}
	if loc.Size > 0 && loc.Size != r.ContentLength {
		return req, blockstore.Errorf(blockstore.KindBadRequest, "Locator size hint does not match Content-Length header")
	}
	req.Hash = loc.Hash
	return req, nil
}

func (g *Gateway) writePutResult(w http.ResponseWriter, r *http.Request, req PutRequest, res PutResult, err error) {
	t := metering.From(r.Context())
	t.ReplicasStored = res.Replicas
	w.Header().Set(keepwire.ReplicasStored, strconv.Itoa(res.Replicas))
	if len(req.Classes) > 0 {
		confirmed := res.Classes
		if len(confirmed) == 0 && err == nil {
			confirmed = map[string]int{}
			for _, c := range req.Classes {
				confirmed[c] = res.Replicas
			}
		}
		t.ClassesConfirmed = confirmed
		w.Header().Set(keepwire.StorageClassesConfirmed, keepwire.FormatConfirmed(confirmed))
	}
	if err != nil {
		g.fail(w, r, err)
		return
	}
	g.metrics.blocksPut.Inc()
	loc := res.Locator
	if loc == "" {
		loc = fmt.Sprintf("%s+%d", req.Hash, req.Size)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(loc)))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, loc)
}

// handlePost stores a body whose hash the client did not compute. The
// body is buffered (its size comes from the memory budget), hashed, then
// written like a PUT.
func (g *Gateway) handlePost(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Via", "HTTP/1.1 keepproxy")
	req, release, err := g.resolvePut(r)
	defer release()
	if err != nil {
		g.fail(w, r, err)
		return
	}
	t := metering.From(r.Context())
	body := httpserver.ProgressBody(w, r, g.opt.BodyIdleTimeout)
	pb, err := g.readPost(r.Context(), req.Identity, pacedBody(r.Context(), newMinRateReader(body, g.opt.MinBodyRate, g.opt.BodyGrace), t.In), req.Size)
	t.BytesIn = body.N
	if err != nil {
		g.fail(w, r, err)
		return
	}
	defer pb.release()
	g.metrics.bytesIn.Add(float64(req.Size))
	req.Hash, req.Body = pb.hash, pb.reader()
	t.Block = fmt.Sprintf("%s+%d", req.Hash, req.Size)
	res, err := g.Put(r.Context(), req)
	g.writePutResult(w, r, req, res, err)
}

// handleIndex merges the stores' indexes (admin scope). Each store's
// blank-line terminator is dropped and one final blank line is added, so
// a complete answer ends in "\n\n" (or is exactly "\n" when empty).
func (g *Gateway) handleIndex(w http.ResponseWriter, r *http.Request) {
	// Access keys never carry the admin scope: /index is theirs to see
	// in no storage (403).
	token, id, err := g.authorize(r, ScopeAdmin)
	var release func()
	if err == nil {
		release, err = g.admit(r)
	}
	if err != nil {
		g.fail(w, r, err)
		return
	}
	defer release()
	prefix := mux.Vars(r)["prefix"]
	if q := r.URL.Query().Get("prefix"); q != "" {
		if !blockstore.IsHexPrefix(q) {
			g.fail(w, r, blockstore.Errorf(blockstore.KindBadRequest, "index prefix must be 0-32 lowercase hex digits"))
			return
		}
		prefix = q
	}
	if g.opt.StoreAdminToken != "" {
		token = g.opt.StoreAdminToken
	}
	g.streamIndex(w, r, id, prefix, token)
}

// handleHealth answers /_health/ping per KEEP-PROTOCOL §4.
func (g *Gateway) handleHealth(w http.ResponseWriter, r *http.Request) {
	mt := g.opt.ManagementToken
	switch {
	case mux.Vars(r)["check"] != "ping":
		httpserver.WriteError(w, blockstore.Errorf(blockstore.KindNotFound, "unknown health check"))
	case mt == "":
		http.Error(w, "disabled", http.StatusNotFound)
	case r.Header.Get("Authorization") == "":
		http.Error(w, "authorization required", http.StatusUnauthorized)
	case subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+mt)) != 1:
		http.Error(w, "authorization error", http.StatusForbidden)
	default:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "{\"health\":\"OK\"}\n")
	}
}

// guardManagement requires the management token when one is configured.
func (g *Gateway) guardManagement(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt := g.opt.ManagementToken; mt != "" {
			tok := httpserver.Token(r, false)
			if tok == "" {
				httpserver.WriteError(w, blockstore.Errorf(blockstore.KindNoToken, "Unauthorized: send the management token"))
				return
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(mt)) != 1 {
				httpserver.WriteError(w, blockstore.Errorf(blockstore.KindForbidden, "Forbidden"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// fitStorage applies the principal's storage to a PUT or POST (replicas,
// classes) and notes what it asks for on the transfer.
func (g *Gateway) fitStorage(r *http.Request, req *PutRequest) error {
	st, err := g.storageOf(req.Identity)
	if err != nil {
		return err
	}
	if err := g.applyStorage(st, req, keepwire.ParseDesiredReplicas(r.Header.Get(keepwire.DesiredReplicas), 0) > 0); err != nil {
		return err
	}
	metering.From(r.Context()).ReplicasWanted = req.Replicas
	return nil
}
