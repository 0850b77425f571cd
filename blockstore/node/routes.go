package node

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/felixge/httpsnoop"
	"github.com/gorilla/mux"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/semaphore"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// maxTrashList bounds the body of PUT /trash.
const maxTrashList = 256 << 20

// Handler returns the node's HTTP API: the keepstore routes of
// KEEP-PROTOCOL §5.1 (block GET/HEAD/PUT/TOUCH/DELETE, untrash, index,
// mounts, trash list), Range reads, /status.json, /_health/ping and
// /metrics; anything else, OPTIONS included, is 400 "Bad Request". Unlike
// Arvados' keepstore it sends no CORS headers and answers no CORS
// preflight: browsers talk to keepproxy, and a web page must not be able
// to use a browser on the LAN to reach the stores. Around the routes:
// request ids, the client address (trusted proxies), one access-log line
// per request, request metrics, the allowed networks (403) and the
// concurrent-request cap (503). It applies no HTTPOptions (see
// HandlerWith).
func (n *Node) Handler() http.Handler { return n.handler }

type api struct {
	n *Node
	o HTTPOptions
}

func (n *Node) newHandler() http.Handler { return n.buildHandler(HTTPOptions{}) }

func (n *Node) buildHandler(o HTTPOptions) http.Handler {
	a := &api{n: n, o: o}
	var h http.Handler = a.router()
	h = a.limit(h)
	h = a.allowNetworks(h)
	h = a.instrument(h)
	h = httpserver.WithAccessLog(n.log, h)
	h = httpserver.WithClientIP(n.opt.TrustedProxies, h)
	return httpserver.WithRequestID(h)
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
	r.Handle("/checksums", a.admin(a.checksumScan)).Methods(http.MethodGet, http.MethodPost, http.MethodDelete)
	r.Handle("/status.json", a.management(a.status)).Methods(http.MethodGet)
	r.HandleFunc("/_health/ping", a.health).Methods(http.MethodGet)
	r.Handle("/metrics", a.management(promhttp.HandlerFor(a.n.opt.Registry, promhttp.HandlerOpts{}).ServeHTTP)).Methods(http.MethodGet)
	return r
}

// get serves GET and HEAD of a block, with Range support on GET.
func (a *api) get(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Vary", keepwire.Signature)
	req, err := readRequest(r)
	var rd *Reader
	if err == nil {
		rd, err = a.n.Open(r.Context(), req)
	}
	if err != nil {
		if blockstore.Is(err, blockstore.KindBadRange) {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", req.Locator.Size))
		}
		a.fail(w, r, err)
		return
	}
	defer rd.Close()
	status := setBlockHeaders(w.Header(), rd)
	w.WriteHeader(status)
	if _, err := rd.WriteTo(progressWriter(w, a.n.opt.BodyIdleTimeout)); err != nil {
		a.n.logFor(r.Context()).Warn("block body cut short", "error", err.Error(), "canceled", r.Context().Err() != nil)
	}
}

// put stores a block; the body is the signed locator.
func (a *api) put(w http.ResponseWriter, r *http.Request) {
	h, err := blockstore.ParseHash(first32(mux.Vars(r)["locator"]))
	var res PutResult
	if err == nil {
		res, err = a.n.Put(r.Context(), PutRequest{Hash: h, Size: r.ContentLength, SizeHint: putSizeHint(mux.Vars(r)["locator"]),
			Body:    putBody(w, r, a.n.opt.BodyIdleTimeout),
			Classes: httpserver.ParseClasses(r.Header.Get(keepwire.StorageClasses)),
			Vouched: a.vouchedSums(r, h)})
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	hd := w.Header()
	hd.Set(keepwire.ReplicasStored, strconv.Itoa(res.Replicas))
	hd.Set(keepwire.StorageClassesConfirmed, res.ConfirmedClasses())
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, a.n.SignLocator(blockstore.Locator{Hash: h, Size: res.Size}, httpserver.Token(r, true))+"\n")
}

func (a *api) touch(w http.ResponseWriter, r *http.Request) {
	a.blockOp(w, r, a.n.Touch)
}

func (a *api) trash(w http.ResponseWriter, r *http.Request) {
	a.blockOp(w, r, a.n.Trash)
}

func (a *api) untrash(w http.ResponseWriter, r *http.Request) {
	a.blockOp(w, r, a.n.Untrash)
}

func (a *api) blockOp(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, h blockstore.Hash) error) {
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	if err == nil {
		err = op(r.Context(), loc.Hash)
	}
	if err != nil {
		a.fail(w, r, err)
	}
}

// index lists stored copies, "hash+size mtime_ns" per line, then a blank
// line; after an error that follows some output, the blank line is left
// out so that clients see the index is incomplete.
func (a *api) index(w http.ResponseWriter, r *http.Request) {
	v := mux.Vars(r)
	prefix := v["prefix"]
	if q := r.URL.Query(); q.Has("prefix") {
		prefix = q.Get("prefix")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	bw := bufio.NewWriterSize(w, 64<<10)
	var line []byte
	started := false
	err := a.n.Index(r.Context(), v["uuid"], prefix, func(bi blockstore.BlockInfo) error {
		started = true
		line = fmt.Appendf(line[:0], "%s+%d %d\n", bi.Hash, bi.Size, bi.Mtime.UnixNano())
		_, err := bw.Write(line)
		return err
	})
	if err != nil && !started {
		a.fail(w, r, err)
		return
	}
	if err == nil {
		bw.WriteByte('\n')
	} else {
		a.n.logFor(r.Context()).Warn("index cut short", "error", err.Error())
	}
	bw.Flush()
}

func (a *api) mounts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.n.Mounts())
}

func (a *api) status(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, a.n.Status())
}

// checksumScan serves the checksum scan (checksumscan.go): GET its
// status, POST to start one (query: mount=<uuid>, rate=<bytes per
// second>), DELETE to stop it; each answers the status as JSON.
func (a *api) checksumScan(w http.ResponseWriter, r *http.Request) {
	var st ScanStatus
	var err error
	switch r.Method {
	case http.MethodPost:
		q := r.URL.Query()
		var rate int64
		if v := q.Get("rate"); v != "" {
			if rate, err = strconv.ParseInt(v, 10, 64); err != nil || rate <= 0 {
				err = blockstore.Errorf(blockstore.KindBadRequest, "rate %q: want a positive number of bytes per second", truncate(v, 40))
			}
		}
		if err == nil {
			st, err = a.n.StartChecksumScan(r.Context(), q.Get("mount"), rate)
		}
	case http.MethodDelete:
		st = a.n.StopChecksumScan()
	default:
		st = a.n.ChecksumScan()
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, st)
}

func (a *api) trashList(w http.ResponseWriter, r *http.Request) {
	var items []TrashItem
	err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTrashList)).Decode(&items)
	if err != nil {
		err = blockstore.Errorf(blockstore.KindBadRequest, "trash list: not a JSON array of {locator, block_mtime, mount_uuid}: %v", err)
	} else {
		err = a.n.SetTrashList(items)
	}
	if err != nil {
		a.fail(w, r, err)
	}
}

// health answers GET /_health/ping as Arvados does (KEEP-PROTOCOL §4).
func (a *api) health(w http.ResponseWriter, r *http.Request) {
	tok := a.n.opt.ManagementToken
	auth := r.Header.Get("Authorization")
	switch {
	case tok == "":
		a.fail(w, r, blockstore.Errorf(blockstore.KindNotFound, "disabled"))
	case auth == "":
		a.fail(w, r, blockstore.Errorf(blockstore.KindNoToken, "authorization required"))
	case subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+tok)) != 1:
		a.fail(w, r, blockstore.Errorf(blockstore.KindForbidden, "authorization error"))
	default:
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"health":"OK"}`+"\n")
	}
}

// admin requires the admin (system root) token: 401 without a token, 403
// with another one, or with any when no admin token is configured.
func (a *api) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkToken(httpserver.Token(r, true), a.n.opt.AdminToken, false); err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r)
	})
}

// management requires the management token when one is configured.
func (a *api) management(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkToken(httpserver.Token(r, false), a.n.opt.ManagementToken, true); err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r)
	})
}

func checkToken(got, want string, openWhenUnset bool) error {
	switch {
	case want == "" && openWhenUnset:
		return nil
	case got == "":
		return blockstore.Errorf(blockstore.KindNoToken, "Unauthorized")
	case want == "":
		return blockstore.Errorf(blockstore.KindForbidden, "Forbidden: no admin token is configured on this keepstore")
	case subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1:
		return blockstore.Errorf(blockstore.KindForbidden, "Forbidden")
	}
	return nil
}

// fail answers with err: 499 if the client has gone (unless err says what
// was wrong with its body), else the status of err's kind. Server-side failures are logged with their cause.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && !clientFault(err) {
		err = blockstore.E("node", blockstore.KindCanceled, err)
	}
	level := slog.LevelDebug
	if blockstore.StatusOf(err) >= 500 {
		level = slog.LevelWarn
	}
	a.n.logFor(r.Context()).Log(r.Context(), level, "request failed", "method", r.Method,
		"kind", blockstore.KindOf(err).String(), "error", err.Error())
	httpserver.WriteError(w, err)
}

// clientFault reports whether err says what was wrong with a request
// body: those are answered as such even when the connection has been
// half-closed (which cancels the request context).
func clientFault(err error) bool {
	switch blockstore.KindOf(err) {
	case blockstore.KindCanceled, blockstore.KindTimeout, blockstore.KindLengthMismatch, blockstore.KindHashMismatch, blockstore.KindTooLarge:
		return true
	}
	return false
}

// allowNetworks refuses clients outside the allowed networks (403).
func (a *api) allowNetworks(next http.Handler) http.Handler {
	allowed := a.n.opt.AllowedNetworks
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

// limit caps concurrent requests (health, metrics and status excepted):
// a request that finds no slot within BudgetWait gets 503 + Retry-After.
func (a *api) limit(next http.Handler) http.Handler {
	max := a.n.opt.MaxConcurrentRequests
	if max <= 0 {
		return next
	}
	sem := semaphore.NewWeighted(int64(max))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "/metrics" || p == "/status.json" || strings.HasPrefix(p, "/_health/") {
			next.ServeHTTP(w, r)
			return
		}
		if !sem.TryAcquire(1) {
			ctx, cancel := context.WithTimeout(r.Context(), a.n.opt.BudgetWait)
			err := sem.Acquire(ctx, 1)
			cancel()
			if err != nil {
				a.n.metrics.overloaded.WithLabelValues("requests").Inc()
				a.fail(w, r, blockstore.Errorf(blockstore.KindOverloaded, "server busy: %d requests in progress; retry later", max))
				return
			}
		}
		defer sem.Release(1)
		next.ServeHTTP(w, r)
	})
}

// instrument counts requests by method and status, and those in flight.
func (a *api) instrument(next http.Handler) http.Handler {
	m := a.n.metrics
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

// readRequest parses the locator and, for GET, the Range header.
func readRequest(r *http.Request) (ReadRequest, error) {
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	req := ReadRequest{Locator: loc, Token: httpserver.Token(r, true), Head: r.Method == http.MethodHead, N: -1}
	if err != nil || req.Head || loc.Size <= 0 {
		return req, err
	}
	req.Off, req.N, err = parseRange(r.Header.Get("Range"), loc.Size)
	return req, err
}

// parseRange interprets a Range header against a block of size > 0: one
// range "bytes=a-b", "bytes=a-" or "bytes=-n". A missing, malformed or
// multi-range header means the whole block (off 0, n -1); a range that
// starts past the end is KindBadRange (416).
func parseRange(h string, size int64) (off, n int64, err error) {
	spec, ok := strings.CutPrefix(h, "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return 0, -1, nil
	}
	first, last, ok := strings.Cut(strings.TrimSpace(spec), "-")
	if !ok {
		return 0, -1, nil
	}
	unsatisfiable := blockstore.Errorf(blockstore.KindBadRange, "requested range not satisfiable: %s of a %d-byte block", h, size)
	if first == "" {
		k, err := strconv.ParseInt(last, 10, 64)
		if err != nil || k < 0 {
			return 0, -1, nil
		}
		if k == 0 {
			return 0, 0, unsatisfiable
		}
		k = min(k, size)
		return size - k, k, nil
	}
	a, err := strconv.ParseInt(first, 10, 64)
	if err != nil || a < 0 {
		return 0, -1, nil
	}
	b := size - 1
	if last != "" {
		if b, err = strconv.ParseInt(last, 10, 64); err != nil || b < a {
			return 0, -1, nil
		}
	}
	if a >= size {
		return 0, 0, unsatisfiable
	}
	return a, min(b, size-1) - a + 1, nil
}

// setBlockHeaders sets the headers of a block response and returns its
// status: 200, or 206 for a part.
func setBlockHeaders(h http.Header, rd *Reader) int {
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(rd.N, 10))
	if rd.Vouched() {
		h.Set(keepwire.DataVerified, keepwire.VerifiedChunks)
	}
	if rd.Partial() {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rd.Off, rd.Off+rd.N-1, rd.Size))
		return http.StatusPartialContent
	}
	return http.StatusOK
}

// putBody is the request body read with progress-based deadlines
// (httpserver.ProgressBody). Once the body has ended cleanly, the read
// deadline is cleared (after a timeout it stays, so that nothing waits on
// the stalled client again): otherwise the server's background read on the connection would
// time out while the volumes finish the write (fsync, a second copy) and
// cancel the request.
func putBody(w http.ResponseWriter, r *http.Request, idle time.Duration) io.Reader {
	return &endClearsDeadline{r: httpserver.ProgressBody(w, r, idle), rc: http.NewResponseController(w)}
}

type endClearsDeadline struct {
	r    io.Reader
	rc   *http.ResponseController
	done bool
}

func (b *endClearsDeadline) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF // a further read would re-arm the deadline
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// progressWriter moves the connection's write deadline to now+idle before
// every write: a client that keeps reading, however slowly, is served to
// the end; one that stops reading for idle is cut off, which releases the
// request's share of the memory budget.
func progressWriter(w http.ResponseWriter, idle time.Duration) io.Writer {
	if idle <= 0 {
		return w
	}
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), idle: idle}
}

type deadlineWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.idle))
	return d.w.Write(p)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// putSizeHint is the size hint of a PUT's locator, -1 if it has none or
// does not parse (only the hash of a PUT locator is required to be valid).
func putSizeHint(s string) int64 {
	loc, err := blockstore.ParseLocator(s)
	if err != nil {
		return -1
	}
	return loc.Size
}

// first32 returns the first 32 characters of s (all of s if shorter): a
// PUT uses only the hash part of its locator.
func first32(s string) string {
	if len(s) > 32 {
		return s[:32]
	}
	return s
}
