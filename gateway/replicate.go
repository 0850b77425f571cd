package gateway

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/gateway/fanout"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/placement"
)

// PutRequest is one block write through the gateway.
type PutRequest struct {
	Hash     blockstore.Hash
	Size     int64
	Body     io.Reader        // exactly Size bytes hashing to Hash, else nothing is stored
	Replicas int              // desired copies
	Classes  []string         // storage classes asked for (may be empty)
	Token    string           // the client's token, forwarded to the stores
	Identity *access.Identity // who stores it (for routing and accounting)
	Host     string           // the host the client connected to
}

// PutResult reports what was stored. Replicas is set even on failure.
type PutResult struct {
	Locator  string         // signed by the stores for the client's token
	Replicas int            // copies confirmed by the stores
	Classes  map[string]int // class → copies, as the stores confirmed them
}

// Put writes a block to the first stores of its rendezvous order, streaming
// the body to req.Replicas stores at once through a windowed Tee. A store
// that fails while offset 0 is still buffered is replaced by the next store
// in probe order; one that fails later is made up for after the body ended
// by a store-to-store copy. A shortfall is KindUnavailable with
// PutResult.Replicas giving the partial count.
func (g *Gateway) Put(ctx context.Context, req PutRequest) (PutResult, error) {
	res := PutResult{Classes: map[string]int{}}
	if req.Size > blockstore.MaxBlockSize {
		return res, blockstore.E("gateway.Put", blockstore.KindTooLarge)
	}
	if req.Replicas <= 0 {
		return res, blockstore.Errorf(blockstore.KindBadRequest, "desired replicas must be at least 1")
	}
	if st, ok := g.upstreamOf(req.Identity); ok {
		return g.putUpstream(ctx, st, req)
	}
	stores := g.router.Route(ctx, placement.RouteRequest{Hash: req.Hash, Write: true, Host: req.Host, Identity: req.Identity})
	if len(stores) == 0 {
		return res, blockstore.Errorf(blockstore.KindUnavailable, "no writable keep stores are configured")
	}
	need := g.window + fanout.ChunkSize
	who := principalKey(req.Identity)
	if err := g.budget.Acquire(ctx, who, need); err != nil {
		return res, err
	}
	defer g.budget.Release(who, need)

	w := &putRun{g: g, req: req, stores: stores, reqID: httpserver.RequestIDFrom(ctx), storeToken: req.Token}
	if g.opt.StoreWriteToken != "" {
		w.storeToken = g.opt.StoreWriteToken
	}
	// On the checksum path (checksum_put.go) the tee checks the MD5: the
	// stores then do not.
	tee := fanout.NewTee(req.Hash, req.Size, g.window, g.opt.VerifyPuts || w.vouches())
	defer tee.Release()
	w.tee = tee
	slots := req.Replicas
	if slots > len(stores) {
		slots = len(stores)
	}
	var wg sync.WaitGroup
	for i := 0; i < slots; i++ {
		svc, r := w.nextStore(true)
		wg.Add(1)
		go func() { defer wg.Done(); w.writer(ctx, svc, r) }()
	}
	pumpErr := tee.Pump(req.Body)
	if pumpErr != nil {
		tee.Abort(pumpErr)
	}
	wg.Wait()
	if pumpErr != nil && !blockstore.Is(pumpErr, blockstore.KindUnavailable) {
		// The client's body was wrong or incomplete: nothing was stored
		// (the final chunk was never released to any store).
		return res, pumpErr
	}
	if w.replicas < req.Replicas && len(w.done) > 0 {
		w.makeUp(ctx)
	}
	res.Locator, res.Replicas = g.signFor(w.locator, req), w.replicas
	for k, v := range w.classes {
		res.Classes[k] = v
	}
	if res.Replicas == 0 && w.lastErr != nil && statusOfUpstream(w.lastErr) == 400 && !tee.Verifies() {
		// The stores refused the body itself (it does not hash to the
		// URL's hash, or is not the declared length): the client's fault.
		// (When the tee checked the MD5 itself, a refusal is damage on the
		// way to the store, not the client's.)
		return res, &blockstore.Error{Op: "gateway.Put", Kind: blockstore.KindHashMismatch, Msg: "the keep stores refused the body: " + blockstore.Message(w.lastErr), Err: w.lastErr}
	}
	if res.Replicas < req.Replicas {
		g.metrics.shortfalls.Inc()
		msg := fmt.Sprintf("Could not write sufficient replicas: wanted %d, stored %d", req.Replicas, res.Replicas)
		if w.lastErr != nil {
			msg += " (last store error: " + blockstore.Message(w.lastErr) + ")"
		}
		return res, &blockstore.Error{Op: "gateway.Put", Kind: blockstore.KindUnavailable, Msg: msg, Err: w.lastErr}
	}
	return res, nil
}

type putRun struct {
	g      *Gateway
	req    PutRequest
	tee    *fanout.Tee
	stores []placement.Service
	reqID  string
	// storeToken is sent to the stores (the caller's token, or the
	// gateway's store write token); the stores' locators are signed for it.
	storeToken string

	mu       sync.Mutex
	next     int
	replicas int
	classes  map[string]int
	locator  string
	done     []placement.Service // stores holding the block
	lastErr  error
}

// nextStore hands out the next store in probe order with a reader at
// offset 0 (nil reader when offset 0 is gone or no store is left).
func (w *putRun) nextStore(first bool) (placement.Service, *fanout.TeeReader) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.next >= len(w.stores) {
		return placement.Service{}, nil
	}
	r := w.tee.NewReader()
	if r == nil && !first {
		return placement.Service{}, nil
	}
	svc := w.stores[w.next]
	w.next++
	return svc, r
}

func (w *putRun) writer(ctx context.Context, svc placement.Service, r *fanout.TeeReader) {
	for r != nil {
		reply, err := w.putOne(ctx, svc, r, w.req.Size, w.tee.Checksums)
		if err == nil {
			r.Close()
			w.record(svc, reply)
			return
		}
		w.fail(svc, err, r.Offset())
		if ctx.Err() != nil {
			r.Close()
			return
		}
		// Replace the store while the whole body is still buffered. The
		// new reader is attached before the old one detaches so the tee
		// never sees zero readers in between.
		nsvc, nr := w.nextStore(false)
		r.Close()
		svc, r = nsvc, nr
	}
}

// putOne runs one upstream PUT, cancelling it if the store stops reading.
// sums, when the body is verified by the gateway (the tee, or makeUp's
// verifying reader), returns its chunk checksums once it has ended; the
// store then checks those instead of the MD5 (checksum_put.go).
func (w *putRun) putOne(ctx context.Context, svc placement.Service, body io.Reader, size int64, sums func() *blockstore.Checksums) (putReply, error) {
	w.g.metrics.upstreamAttempts.WithLabelValues(svc.UUID, "PUT").Inc()
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if tr, ok := body.(*fanout.TeeReader); ok && w.g.upstreamIdle > 0 {
		go func() {
			t := time.NewTicker(w.g.upstreamIdle / 4)
			defer t.Stop()
			for {
				select {
				case <-cctx.Done():
					return
				case <-t.C:
					if tr.Stalled(w.g.upstreamIdle) {
						cancel(fmt.Errorf("store %s stalled for %s", svc.UUID, w.g.upstreamIdle))
						return
					}
				}
			}
		}()
	}
	hd := putHeaders{token: w.storeToken, replicas: w.req.Replicas, classes: w.req.Classes, requestID: w.reqID}
	if w.vouches() && sums != nil {
		hd.sums = sums
	}
	return w.g.up.put(cctx, svc, w.req.Hash, size, body, hd)
}

func (w *putRun) record(svc placement.Service, rep putReply) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.replicas += rep.replicas
	if w.classes == nil {
		w.classes = map[string]int{}
	}
	for k, v := range rep.confirmed {
		w.classes[k] += v
	}
	if w.locator == "" {
		w.locator = rep.locator
	}
	w.done = append(w.done, svc)
}

func (w *putRun) fail(svc placement.Service, err error, off int64) {
	w.g.metrics.upstreamFailures.WithLabelValues(svc.UUID, "PUT").Inc()
	w.g.log.Warn("store write failed", "request_id", w.reqID, "store", svc.UUID, "block", w.req.Hash.String(), "offset", off, "error", err.Error())
	w.mu.Lock()
	if !blockstore.Is(err, blockstore.KindCanceled) || w.lastErr == nil {
		w.lastErr = err
	}
	w.mu.Unlock()
}

// makeUp copies the block from a store that has it to further stores in
// probe order until enough replicas exist. Data flows store → proxy →
// store through a verifying reader; nothing is buffered whole.
func (w *putRun) makeUp(ctx context.Context) {
	src := w.done[0]
	for w.replicas < w.req.Replicas {
		w.mu.Lock()
		if w.next >= len(w.stores) {
			w.mu.Unlock()
			return
		}
		dst := w.stores[w.next]
		w.next++
		w.mu.Unlock()
		loc := w.locator
		if loc == "" {
			loc = fmt.Sprintf("%s+%d", w.req.Hash, w.req.Size)
		}
		resp, err := w.g.up.get(ctx, src, loc, "GET", w.storeToken, w.reqID, 0)
		if err != nil {
			w.fail(src, err, 0)
			return
		}
		var sums blockstore.ChunkHasher
		body := blockstore.NewVerifyingReader(hashingBody{resp.Body, &sums}, w.req.Hash, w.req.Size)
		rep, err := w.putOne(ctx, dst, body, w.req.Size, sums.Sum)
		resp.Body.Close()
		if err != nil {
			w.fail(dst, err, 0)
			continue
		}
		w.g.log.Info("replica made up by store-to-store copy", "request_id", w.reqID, "block", w.req.Hash.String(), "from", src.UUID, "to", dst.UUID)
		w.record(dst, rep)
	}
}

// signFor returns the locator to give the caller: the stores' own when the
// gateway has no signing key, else signed by the gateway for the caller's
// token (the stores signed it for the token the gateway sent them).
func (g *Gateway) signFor(storeLoc string, req PutRequest) string {
	if g.signer == nil {
		return storeLoc
	}
	loc, err := blockstore.ParseLocator(storeLoc)
	if err != nil || loc.Hash != req.Hash {
		loc = blockstore.Locator{Hash: req.Hash, Size: req.Size}
	}
	return g.signForCaller(loc, req.Identity, req.Token).String()
}
