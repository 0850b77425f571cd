package gateway

import (
	"fmt"
	"net/http"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/metering"
)

// resolveGet is everything a GET or HEAD goes through before a store is
// asked: parse (locator, Range), authenticate (the rule and the storage
// come with the principal), the empty block's ranges, the signature step
// toward the stores or the upstream (toStores, toUpstream), and admission
// (store slot and copy buffer from the principal's share, the meter).
// release is never nil; the transfer record gets the block and principal.
func (g *Gateway) resolveGet(r *http.Request) (req GetRequest, release func(), err error) {
	release = func() {}
	t := metering.From(r.Context())
	if req, err = g.parseGet(r); err != nil {
		return req, release, err
	}
	t.Block = req.Locator.Hash.String()
	if req.Locator.HasSize() {
		t.Block = fmt.Sprintf("%s+%d", req.Locator.Hash, req.Locator.Size)
	}
	if req.Token, req.Identity, err = g.authorize(r, ScopeRead); err != nil {
		return req, release, err
	}
	req.Host = r.Host
	if req.Locator.Hash == blockstore.EmptyHash {
		// Every range of the empty block is unsatisfiable except
		// "bytes=0-", which is the whole (empty) block.
		if req.Range != nil && (req.Range.From != 0 || req.Range.To >= 0) {
			return req, release, unsatisfiable(0)
		}
		return req, release, nil
	}
	if st, ok := g.upstreamOf(req.Identity); ok {
		err = g.toUpstream(st, &req)
	} else {
		err = g.toStores(&req)
	}
	if err != nil {
		return req, release, err
	}
	slot, err := g.admitRead(r.Context(), req.Identity, req.Head)
	if err != nil {
		return req, release, err
	}
	metered, err := g.admit(r)
	if err != nil {
		slot()
		return req, release, err
	}
	return req, func() { metered(); slot() }, nil
}

// serveBlock opens the block on the stores and sends it; a body cut short
// after the headers aborts the response, so the client never sees a clean
// one.
func (g *Gateway) serveBlock(w http.ResponseWriter, r *http.Request, req GetRequest) {
	t := metering.From(r.Context())
	blk, err := g.Open(r.Context(), req)
	if err != nil {
		g.fail(w, r, err)
		return
	}
	defer blk.Close()
	t.Block = fmt.Sprintf("%s+%d", req.Locator.Hash, blk.Size)
	n, status := g.writeBlock(w, r, blk, req.Head)
	t.BytesOut, t.Status = n, status
	if status != http.StatusOK && status != http.StatusPartialContent {
		t.ErrorKind = blockstore.KindBadGateway.String()
		panic(http.ErrAbortHandler)
	}
}

// resolvePut is everything a PUT or POST goes through before its body is
// read: parse (loop, Content-Length, locator, size hint), authenticate,
// the principal's storage (replicas, classes), the size limit, admission.
// release is never nil.
func (g *Gateway) resolvePut(r *http.Request) (req PutRequest, release func(), err error) {
	release = func() {}
	if req, err = g.parsePut(r); err != nil {
		return req, release, err
	}
	noteRequest(r, req)
	if req.Token, req.Identity, err = g.authorize(r, ScopeWrite); err != nil {
		return req, release, err
	}
	req.Host = r.Host
	if err = g.fitStorage(r, &req); err != nil {
		return req, release, err
	}
	if req.Size > blockstore.MaxBlockSize {
		return req, release, blockstore.E(r.Method, blockstore.KindTooLarge)
	}
	if release, err = g.admit(r); err != nil {
		return req, func() {}, err
	}
	return req, release, nil
}
