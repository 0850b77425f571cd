// Package keepclient is a small client for a keepproxy (KEEP-PROTOCOL §6):
// store a block (PUT /<hash>), read one back while checking its MD5, and
// ask whether one exists (HEAD). Temporary failures — network errors, 408,
// 429 and 5xx except 507, and bytes that do not match their hash — are
// retried with exponential back-off; everything else fails at once with a
// one-line *blockstore.Error that says what to do about it.
package keepclient

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// Options configure a Client. Only Proxy and Token are required.
type Options struct {
	// Proxy is the keepproxy base URL, e.g. https://keep.example:25107.
	Proxy string
	// Token is sent as "Authorization: Bearer <token>".
	Token string
	// Insecure skips TLS certificate verification (self-signed
	// development certificates only).
	Insecure bool
	// Retries is how many times a temporary failure is retried after the
	// first attempt. 0 means the default (5); negative means none.
	Retries int
	// RetryDelay is the first back-off delay (default 1s); it doubles, with
	// jitter, up to MaxRetryDelay (default 30s). A Retry-After header from
	// the proxy is honoured within that ceiling.
	RetryDelay, MaxRetryDelay time.Duration
	// AttemptTimeout bounds one HTTP attempt (default 5m: a 64 MiB block
	// over a slow link, as Arvados clients allow for proxies).
	AttemptTimeout time.Duration
	// HTTPClient replaces the default client (its transport's TLS settings
	// then win over Insecure).
	HTTPClient *http.Client
	// UserAgent is sent with every request.
	UserAgent string
	// OnRetry, if set, is called before each back-off sleep.
	OnRetry func(op string, err error, wait time.Duration)
}

// Client talks to one keepproxy. It is safe for concurrent use.
type Client struct {
	base    string
	token   string
	hc      *http.Client
	opt     Options
	retries int
}

// Defaults.
const (
	DefaultRetries        = 5
	DefaultRetryDelay     = time.Second
	DefaultMaxRetryDelay  = 30 * time.Second
	DefaultAttemptTimeout = 5 * time.Minute
)

// New checks the options and builds a client.
func New(o Options) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(o.Proxy, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, blockstore.Errorf(blockstore.KindBadRequest, "proxy URL %q is not an http:// or https:// URL", o.Proxy)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, blockstore.Errorf(blockstore.KindBadRequest, "proxy URL %q must not have a query or fragment", o.Proxy)
	}
	if o.Token == "" {
		return nil, blockstore.Errorf(blockstore.KindNoToken, "no token: set KEEP_TOKEN (or --token, or token: in the config file)")
	}
	if strings.ContainsAny(o.Token, " \t\r\n") {
		return nil, blockstore.Errorf(blockstore.KindBadRequest, "the token contains white space; check KEEP_TOKEN")
	}
	c := &Client{base: u.String(), token: o.Token, opt: o, hc: o.HTTPClient}
	switch {
	case o.Retries == 0:
		c.retries = DefaultRetries
	case o.Retries < 0:
		c.retries = 0
	default:
		c.retries = o.Retries
	}
	if c.opt.RetryDelay <= 0 {
		c.opt.RetryDelay = DefaultRetryDelay
	}
	if c.opt.MaxRetryDelay <= 0 {
		c.opt.MaxRetryDelay = DefaultMaxRetryDelay
	}
	if c.opt.AttemptTimeout <= 0 {
		c.opt.AttemptTimeout = DefaultAttemptTimeout
	}
	if c.opt.UserAgent == "" {
		c.opt.UserAgent = "keepgate-keepclient/1"
	}
	if c.hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		tr.TLSHandshakeTimeout = 10 * time.Second
		tr.MaxIdleConnsPerHost = 32
		tr.IdleConnTimeout = 120 * time.Second
		if o.Insecure {
			tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- opt-in for development certificates, warned about by callers
		}
		c.hc = &http.Client{Transport: tr}
	}
	return c, nil
}

// Proxy is the base URL requests go to.
func (c *Client) Proxy() string { return c.base }

// PutResult is what the proxy answered to a stored block.
type PutResult struct {
	// Locator is the signed locator (hash+size+A…) to read the block back.
	Locator blockstore.Locator
	// Replicas is X-Keep-Replicas-Stored (1 if the proxy did not say).
	Replicas int
}

// CallOption adjusts one call.
type CallOption func(*callOpts)

type callOpts struct {
	progress func(delta int64)
}

// WithProgress reports body bytes as they are sent (PUT) or received
// (GET). When an attempt fails after sending some bytes, the count is
// taken back with a negative delta before the retry.
func WithProgress(fn func(delta int64)) CallOption {
	return func(o *callOpts) { o.progress = fn }
}

func collect(opts []CallOption) callOpts {
	var o callOpts
	for _, f := range opts {
		f(&o)
	}
	if o.progress == nil {
		o.progress = func(int64) {}
	}
	return o
}

// PutBlock stores data asking for replicas copies (0: the proxy's default).
func (c *Client) PutBlock(ctx context.Context, data []byte, replicas int, opts ...CallOption) (PutResult, error) {
	return c.PutReader(ctx, blockstore.HashOf(data), int64(len(data)), readerAt(data), replicas, opts...)
}

type readerAt []byte

func (b readerAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(b)) {
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// PutReader stores the size bytes of r (read from offset 0 on every
// attempt) under hash h. The empty block is not sent: its locator is
// known.
func (c *Client) PutReader(ctx context.Context, h blockstore.Hash, size int64, r io.ReaderAt, replicas int, opts ...CallOption) (PutResult, error) {
	o := collect(opts)
	if size == 0 && h == blockstore.EmptyHash {
		return PutResult{Locator: blockstore.Locator{Hash: h, Size: 0}, Replicas: max(replicas, 1)}, nil
	}
	if size > blockstore.MaxBlockSize {
		return PutResult{}, blockstore.Errorf(blockstore.KindTooLarge, "block of %d bytes is over the %d-byte (64 MiB) limit — cut data into blocks of at most 64 MiB", size, blockstore.MaxBlockSize)
	}
	op := opCtx{c: c, name: "PUT " + h.String(), reqID: httpserver.NewRequestID()}
	return retry(ctx, op, func(actx context.Context) (PutResult, error) {
		// The transport may still read the body after Do returns: count
		// atomically.
		var sent atomic.Int64
		body := &countingReader{r: io.NewSectionReader(r, 0, size), fn: func(n int64) { sent.Add(n); o.progress(n) }}
		req, err := http.NewRequestWithContext(actx, http.MethodPut, c.base+"/"+h.String(), body)
		if err != nil {
			return PutResult{}, permanent(blockstore.E("keepclient", blockstore.KindBadRequest, "building the request", err))
		}
		req.ContentLength = size
		req.GetBody = nil
		c.header(req, op.reqID)
		req.Header.Set("Content-Type", "application/octet-stream")
		if replicas > 0 {
			req.Header.Set(keepwire.DesiredReplicas, strconv.Itoa(replicas))
		}
		res, err := doReq(c, req, func(resp *http.Response) (PutResult, error) {
			b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if err != nil {
				return PutResult{}, transient(blockstore.E("keepclient", blockstore.KindBadGateway, "reading the proxy's answer", err))
			}
			loc, err := blockstore.ParseLocator(strings.TrimSpace(string(b)))
			if err != nil || loc.Hash != h || loc.Size != size {
				return PutResult{}, permanent(blockstore.Errorf(blockstore.KindBadGateway, "the proxy answered PUT %s with %q, not a locator for it", h, trunc(string(b))))
			}
			n, err := strconv.Atoi(resp.Header.Get(keepwire.ReplicasStored))
			if err != nil {
				n = 1
			}
			return PutResult{Locator: loc, Replicas: n}, nil
		}, statusContext{size: size, replicas: replicas})
		if err != nil {
			if n := sent.Swap(0); n > 0 {
				o.progress(-n)
			}
		}
		return res, err
	})
}

// Head asks whether the block exists and the locator's signature is
// accepted; it returns the size the proxy reports.
func (c *Client) Head(ctx context.Context, loc blockstore.Locator) (int64, error) {
	if loc.Hash == blockstore.EmptyHash {
		return 0, nil
	}
	op := opCtx{c: c, name: "HEAD " + loc.Hash.String(), reqID: httpserver.NewRequestID()}
	return retry(ctx, op, func(actx context.Context) (int64, error) {
		req, err := http.NewRequestWithContext(actx, http.MethodHead, c.base+"/"+loc.String(), nil)
		if err != nil {
			return 0, permanent(blockstore.E("keepclient", blockstore.KindBadRequest, "building the request", err))
		}
		c.header(req, op.reqID)
		return doReq(c, req, func(resp *http.Response) (int64, error) {
			if loc.HasSize() && resp.ContentLength != loc.Size {
				return 0, permanent(blockstore.Errorf(blockstore.KindBadGateway, "HEAD %s: the proxy reports %d bytes, the locator says %d", loc.Hash, resp.ContentLength, loc.Size))
			}
			return resp.ContentLength, nil
		}, statusContext{loc: &loc})
	})
}

// GetBlock streams the block to w while checking its MD5. The write that
// would complete the block is withheld unless the bytes match, so w never
// holds a complete-looking wrong block; on any error w may hold a prefix
// and must be discarded. A connection lost mid-body is resumed with a
// Range request; a hash mismatch once bytes were passed on is final.
func (c *Client) GetBlock(ctx context.Context, loc blockstore.Locator, w io.Writer, opts ...CallOption) error {
	o := collect(opts)
	if loc.Hash == blockstore.EmptyHash {
		return nil
	}
	if !loc.HasSize() {
		return blockstore.Errorf(blockstore.KindInvalidLocator, "locator %s has no size", loc.String())
	}
	vw := blockstore.NewVerifyingWriter(w, loc.Hash, loc.Size)
	op := opCtx{c: c, name: "GET " + loc.Hash.String(), reqID: httpserver.NewRequestID()}
	_, err := retry(ctx, op, func(actx context.Context) (struct{}, error) {
		from := vw.Written()
		if err := c.getAttempt(actx, op, loc, from, vw, o.progress); err != nil {
			if blockstore.Is(err, blockstore.KindCorrupt) {
				return struct{}{}, permanent(corruptError(loc))
			}
			return struct{}{}, err
		}
		if err := vw.Finish(); err != nil {
			return struct{}{}, transient(err)
		}
		return struct{}{}, nil
	})
	return err
}

// ReadBlock reads the whole block into buf (grown if needed) and returns
// the filled slice, only after its MD5 matched. A mismatch is retried from
// the start like any temporary failure.
func (c *Client) ReadBlock(ctx context.Context, loc blockstore.Locator, buf []byte, opts ...CallOption) ([]byte, error) {
	o := collect(opts)
	if loc.Hash == blockstore.EmptyHash {
		return buf[:0], nil
	}
	if !loc.HasSize() {
		return nil, blockstore.Errorf(blockstore.KindInvalidLocator, "locator %s has no size", loc.String())
	}
	if loc.Size > blockstore.MaxBlockSize {
		return nil, blockstore.Errorf(blockstore.KindTooLarge, "locator %s is over the 64 MiB block limit", loc.String())
	}
	if int64(cap(buf)) < loc.Size {
		buf = make([]byte, loc.Size)
	}
	buf = buf[:loc.Size]
	op := opCtx{c: c, name: "GET " + loc.Hash.String(), reqID: httpserver.NewRequestID()}
	var got, reported int64
	restart := false
	progress := func(n int64) { reported += n; o.progress(n) }
	_, err := retry(ctx, op, func(actx context.Context) (struct{}, error) {
		if restart { // the last pass read wrong bytes: start over
			o.progress(-reported)
			got, reported, restart = 0, 0, false
		}
		fw := &fillWriter{buf: buf, n: int(got)}
		err := c.getAttempt(actx, op, loc, got, fw, progress)
		got = int64(fw.n)
		if blockstore.Is(err, blockstore.KindCorrupt) { // longer than the size
			restart = true
			return struct{}{}, transient(corruptError(loc))
		}
		if err != nil {
			return struct{}{}, err
		}
		if blockstore.HashOf(buf) != loc.Hash {
			restart = true
			return struct{}{}, transient(corruptError(loc))
		}
		return struct{}{}, nil
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}

func corruptError(loc blockstore.Locator) error {
	return blockstore.Errorf(blockstore.KindCorrupt, "block %s+%d: the bytes received do not match the block's MD5 — the stored copy is damaged or the data was altered in transit", loc.Hash, loc.Size)
}

type fillWriter struct {
	buf []byte
	n   int
}

func (f *fillWriter) Write(p []byte) (int, error) {
	if len(p) > len(f.buf)-f.n {
		return 0, blockstore.Errorf(blockstore.KindCorrupt, "longer than the locator's size")
	}
	copy(f.buf[f.n:], p)
	f.n += len(p)
	return len(p), nil
}

// getAttempt does one GET from offset from (a Range request when > 0),
// copying the body into w and reporting progress.
func (c *Client) getAttempt(ctx context.Context, op opCtx, loc blockstore.Locator, from int64, w io.Writer, progress func(int64)) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/"+loc.String(), nil)
	if err != nil {
		return permanent(blockstore.E("keepclient", blockstore.KindBadRequest, "building the request", err))
	}
	c.header(req, op.reqID)
	req.Header.Set("Accept", "application/octet-stream")
	if from > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", from))
	}
	_, err = doReq(c, req, func(resp *http.Response) (struct{}, error) {
		body := io.Reader(resp.Body)
		switch {
		case resp.StatusCode == http.StatusPartialContent:
			var start, end, total int64
			if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total); err != nil || start != from || total != loc.Size {
				return struct{}{}, transient(blockstore.Errorf(blockstore.KindBadGateway, "the proxy answered a range request with Content-Range %q", resp.Header.Get("Content-Range")))
			}
		case from > 0: // 200: the whole block again; skip what we have
			if _, err := io.CopyN(io.Discard, body, from); err != nil {
				return struct{}{}, transient(blockstore.E("keepclient", blockstore.KindBadGateway, "reading the block", err))
			}
		}
		if want := loc.Size - from; resp.ContentLength >= 0 && resp.ContentLength != want {
			return struct{}{}, transient(blockstore.Errorf(blockstore.KindBadGateway, "the proxy sent Content-Length %d for %d bytes of %s", resp.ContentLength, want, loc.Hash))
		}
		n, err := io.Copy(w, &countingReader{r: io.LimitReader(body, loc.Size-from+1), fn: progress})
		switch {
		case blockstore.Is(err, blockstore.KindCorrupt):
			return struct{}{}, err
		case err != nil:
			return struct{}{}, transient(blockstore.E("keepclient", blockstore.KindBadGateway, "the connection broke while reading the block", err))
		case n < loc.Size-from:
			return struct{}{}, transient(blockstore.Errorf(blockstore.KindBadGateway, "the proxy sent %d of %d bytes of %s", from+n, loc.Size, loc.Hash))
		}
		return struct{}{}, nil
	}, statusContext{loc: &loc})
	return err
}

func (c *Client) header(req *http.Request, reqID string) {
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(keepwire.RequestID, reqID)
	req.Header.Set("User-Agent", c.opt.UserAgent)
}

// opCtx is one logical operation: its retries share the request id.
type opCtx struct {
	c     *Client
	name  string
	reqID string
}

// doReq sends req, maps a non-2xx status to an error and otherwise hands
// the response to ok.
func doReq[T any](c *Client, req *http.Request, ok func(*http.Response) (T, error), sc statusContext) (T, error) {
	var zero T
	resp, err := c.hc.Do(req)
	if err != nil {
		return zero, c.networkError(err)
	}
	defer func() {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode/100 == 2 {
		return ok(resp)
	}
	return zero, statusError(req.Method, resp, sc)
}

type countingReader struct {
	r  io.Reader
	fn func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.fn(int64(n))
	}
	return n, err
}
