package gateway

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/placement"
)

// GetRequest is one block read through the gateway.
type GetRequest struct {
	Locator  blockstore.Locator
	Token    string
	Identity *access.Identity
	Host     string
	Head     bool
	// Range: From ≥ 0 with To < 0 means to the end. Zero Range = whole block.
	Range *ByteRange
}

// ByteRange is an inclusive byte range (keepwire's).
type ByteRange = keepwire.ByteRange

// Block is an open block being read from the stores. Size is the full
// block size; Offset/Length describe the part Read returns. Read fails over
// to the next store (with a Range request at the current offset) when a
// store fails mid-body, and — for whole-block reads with a size hint —
// withholds the final chunk unless the MD5 over all stores' bytes matches.
type Block struct {
	Size, Offset, Length int64
	Partial              bool // a client Range was served (206)

	g       *Gateway
	req     GetRequest
	reqID   string
	ctx     context.Context
	order   []placement.Service
	cur     int // index in order of the current store
	resp    *http.Response
	body    io.Reader // resp.Body limited to what is still wanted
	read    int64     // bytes of [Offset, Offset+Length) delivered
	tried   map[int]bool
	reader  io.Reader // verifying wrapper (or r itself)
	lastErr error
	// trusted: the stores vouch for every byte they send
	// (keepwire.DataVerified: each chunk checked against its CRC32C right
	// before it is sent), so the gateway does not hash them; failover then
	// continues with a Range request only from a store that vouches too.
	trusted bool
	// corrupt: a store answered that its copy failed its checksum.
	corrupt bool
}

// Open finds the block on the stores in probe order: 404 only when every
// store answered 404; 502 when temporary failures remain after retries;
// 422 for other refusals (bad or expired signature, per the protocol).
func (g *Gateway) Open(ctx context.Context, req GetRequest) (*Block, error) {
	b := &Block{g: g, req: req, reqID: httpserver.RequestIDFrom(ctx), ctx: ctx, order: g.router.Route(ctx, placement.RouteRequest{Hash: req.Locator.Hash, Host: req.Host, Identity: req.Identity}), tried: map[int]bool{}}
	if len(b.order) == 0 {
		return nil, blockstore.Errorf(blockstore.KindBadGateway, "no keep stores are configured")
	}
	if err := b.openFirst(); err != nil {
		return nil, err
	}
	switch {
	case b.trusted:
		b.reader = readerFunc(b.readSplice)
	case !req.Head && !b.Partial && req.Locator.HasSize():
		b.reader = blockstore.NewVerifyingReader(readerFunc(b.readSplice), req.Locator.Hash, b.Size)
	default:
		b.reader = readerFunc(b.readSplice)
	}
	return b, nil
}

// openFirst tries every store in order (with up to two more passes over the
// ones that failed temporarily) until one answers 200/206.
func (b *Block) openFirst() error {
	notFound, others, corrupt := 0, 0, 0
	var tempErr, permErr error
	retry := make([]int, 0, len(b.order))
	for i := range b.order {
		retry = append(retry, i)
	}
	for pass := 0; pass < 3 && len(retry) > 0; pass++ {
		if pass > 0 {
			if err := sleepCtx(b.ctx, backoff(pass)); err != nil {
				return blockstore.E("gateway.Open", blockstore.KindCanceled, err)
			}
		}
		var again []int
		for _, i := range retry {
			err := b.openAt(i)
			if err == nil {
				return nil
			}
			if blockstore.Is(err, blockstore.KindCanceled) || blockstore.Is(err, blockstore.KindBadRange) {
				// A range outside the block is the client's mistake: every
				// store would say the same, so answer 416 at once.
				var re *RangeError
				if blockstore.Is(err, blockstore.KindBadRange) && !errors.As(err, &re) && b.req.Locator.HasSize() {
					return Unsatisfiable(b.req.Locator.Size) // a store's own 416
				}
				return err
			}
			switch {
			case statusOfUpstream(err) == http.StatusNotFound:
				notFound++
			case isChecksumError(err):
				// The store found its copy corrupt (KEEP-PROTOCOL §5.2):
				// retrying it will not help.
				corrupt++
				tempErr = err
			case temporary(err):
				tempErr = err
				again = append(again, i)
			default:
				others++
				permErr = err
			}
		}
		retry = again
	}
	switch {
	case corrupt > 0 && corrupt+notFound == len(b.order):
		b.g.metrics.corrupt.Inc()
		return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindCorrupt, Msg: "checksum mismatch in stored data: every copy of the block failed its checksum; it must be restored from elsewhere", Err: tempErr}
	case tempErr != nil:
		return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindBadGateway, Msg: "keep stores failed to return the block; try again later", Err: tempErr}
	case permErr != nil && others > 0:
		return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindUnprocessable, Msg: "keep stores refused the request: " + blockstore.Message(permErr), Err: permErr}
	default:
		return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindNotFound, Msg: "Block not found"}
	}
}

// openAt opens the block on store i so that it yields bytes from
// b.Offset+b.read on.
func (b *Block) openAt(i int) error {
	svc := b.order[i]
	b.tried[i] = true
	b.g.metrics.upstreamAttempts.WithLabelValues(svc.UUID, b.method()).Inc()
	first := b.resp == nil
	off := int64(0)
	if !first {
		off = b.Offset + b.read
	} else if b.req.Range != nil {
		off = b.req.Range.From
	}
	resp, err := b.g.up.get(b.ctx, svc, b.upstreamLocator(), b.method(), b.req.Token, b.reqID, off)
	if err != nil {
		if k := blockstore.KindOf(err); k != blockstore.KindCanceled && k != blockstore.KindNotFound && k != blockstore.KindBadRange {
			b.g.metrics.upstreamFailures.WithLabelValues(svc.UUID, b.method()).Inc()
		}
		b.corrupt = b.corrupt || isChecksumError(err)
		b.lastErr = err
		return err
	}
	size, err := responseSize(resp, off)
	if err != nil {
		resp.Body.Close()
		b.g.metrics.upstreamFailures.WithLabelValues(svc.UUID, b.method()).Inc()
		return err
	}
	if b.req.Locator.HasSize() && size != b.req.Locator.Size {
		resp.Body.Close()
		b.g.metrics.upstreamFailures.WithLabelValues(svc.UUID, b.method()).Inc()
		return &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "store reported a size different from the locator's"}
	}
	skip := int64(0)
	if resp.StatusCode == http.StatusOK && off > 0 {
		skip = off // the store ignored Range: discard what we already have
	}
	// Only a chunk-by-chunk promise on the bytes actually sent counts: an
	// earlier keepstore's "md5" was a check of another read of the file.
	vouched := resp.Header.Get(keepwire.DataVerified) == keepwire.VerifiedChunks
	if first {
		b.trusted = vouched && !b.req.Head && b.req.Locator.HasSize()
	} else if b.trusted && !vouched {
		resp.Body.Close()
		b.lastErr = &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "store " + svc.UUID + " cannot vouch for the rest of the block's bytes"}
		return b.lastErr
	}
	if first {
		b.Size = size
		b.Offset, b.Length = 0, size
		if r := b.req.Range; r != nil {
			to := r.To
			if to < 0 || to >= size {
				to = size - 1
			}
			if r.From >= size || to < r.From {
				resp.Body.Close()
				return Unsatisfiable(size)
			}
			b.Offset, b.Length, b.Partial = r.From, to-r.From+1, true
		}
	}
	if b.resp != nil {
		b.resp.Body.Close()
	}
	b.resp, b.cur = resp, i
	if skip > 0 {
		if _, err := io.CopyN(io.Discard, resp.Body, skip); err != nil {
			return blockstore.E("gateway.Open", blockstore.KindBadGateway, err)
		}
	}
	b.body = io.LimitReader(resp.Body, b.Length-b.read)
	return nil
}

func (b *Block) method() string {
	if b.req.Head {
		return http.MethodHead
	}
	return http.MethodGet
}

// upstreamLocator is what we ask stores for: the locator as given, minus
// +K@<5 chars> cluster hints (KEEP-PROTOCOL §6.3).
func (b *Block) upstreamLocator() string {
	l := blockstore.Locator{Hash: b.req.Locator.Hash, Size: b.req.Locator.Size}
	for _, h := range b.req.Locator.Hints {
		if strings.HasPrefix(h, "K@") && len(h) == 7 {
			continue
		}
		l.Hints = append(l.Hints, h)
	}
	return l.String()
}

// Read implements io.Reader.
func (b *Block) Read(p []byte) (int, error) {
	if b.req.Head {
		return 0, io.EOF
	}
	return b.reader.Read(p)
}

// readSplice reads from the current store, failing over on errors.
func (b *Block) readSplice(p []byte) (int, error) {
	for {
		if b.read >= b.Length {
			return 0, io.EOF
		}
		n, err := b.body.Read(p)
		b.read += int64(n)
		if n > 0 {
			return n, nil
		}
		if err == nil {
			continue
		}
		if b.ctx.Err() != nil {
			return 0, blockstore.E("gateway.Read", blockstore.KindCanceled, b.ctx.Err())
		}
		// The store failed (or ended early) mid-body: continue elsewhere.
		svc := b.order[b.cur]
		b.g.metrics.upstreamFailures.WithLabelValues(svc.UUID, "GET").Inc()
		b.g.log.Warn("store failed mid-body; resuming from the next store", "request_id", b.reqID, "store", svc.UUID, "block", b.req.Locator.Hash.String(), "offset", b.Offset+b.read, "error", errString(err))
		if ferr := b.failover(); ferr != nil {
			return 0, ferr
		}
	}
}

func (b *Block) failover() error {
	for pass := 0; pass < 2; pass++ {
		for j := 1; j <= len(b.order); j++ {
			i := (b.cur + j) % len(b.order)
			if pass == 0 && b.tried[i] && i != b.cur {
				continue
			}
			if i == b.cur && pass == 0 {
				continue
			}
			if err := b.openAt(i); err == nil {
				return nil
			} else if blockstore.Is(err, blockstore.KindCanceled) {
				return err
			}
		}
		if err := sleepCtx(b.ctx, backoff(pass+1)); err != nil {
			return blockstore.E("gateway.Read", blockstore.KindCanceled, err)
		}
	}
	if b.corrupt {
		return &blockstore.Error{Op: "gateway.Read", Kind: blockstore.KindCorrupt, Msg: "checksum mismatch in stored data: the rest of the block failed its checksum on every store that has it", Err: b.lastErr}
	}
	return &blockstore.Error{Op: "gateway.Read", Kind: blockstore.KindBadGateway, Msg: "every store failed while sending the block", Err: b.lastErr}
}

// Close releases the current upstream response.
func (b *Block) Close() error {
	if b.resp != nil {
		return b.resp.Body.Close()
	}
	return nil
}

func responseSize(resp *http.Response, off int64) (int64, error) {
	if resp.StatusCode == http.StatusPartialContent {
		// Content-Range: bytes a-b/size
		cr := resp.Header.Get("Content-Range")
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			if n, err := strconv.ParseInt(cr[i+1:], 10, 64); err == nil {
				return n, nil
			}
		}
		return 0, &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "store sent 206 without a usable Content-Range"}
	}
	if resp.ContentLength < 0 {
		return 0, &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "store sent no Content-Length"}
	}
	return resp.ContentLength, nil
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func backoff(pass int) time.Duration {
	max := 100 * time.Millisecond << pass
	return time.Duration(rand.Int64N(int64(max))) + time.Millisecond
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func errString(err error) string {
	if err == nil {
		return "short body"
	}
	return err.Error()
}

// isChecksumError reports a store's "checksum mismatch in stored data"
// answer (502 with that text, KEEP-PROTOCOL §5.2).
func isChecksumError(err error) bool {
	var se *upstreamStatusError // a store's own answer (not our verification)
	return errors.As(err, &se) && se.kind == blockstore.KindCorrupt
}

// RangeError is the cause of a KindBadRange answer: a Range outside a block
// of Size bytes. The handler turns it into "Content-Range: bytes */Size".
type RangeError struct{ Size int64 }

func (e *RangeError) Error() string { return "block is " + strconv.FormatInt(e.Size, 10) + " bytes" }

// Unsatisfiable is the KindBadRange answer to a Range outside a block of
// size bytes; its cause is a *RangeError.
func Unsatisfiable(size int64) error {
	return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindBadRange,
		Msg: "requested range not satisfiable: the block is " + strconv.FormatInt(size, 10) + " bytes", Err: &RangeError{Size: size}}
}
