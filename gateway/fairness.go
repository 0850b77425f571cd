package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"io"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
)

// principalKey names whose share a request is paid from.
func principalKey(id *access.Identity) string {
	if id == nil {
		return ""
	}
	return id.Source + "/" + id.Name
}

// CopyBufSize is the copy buffer of one GET: AdmitRead charges it to the
// caller's share, and the HTTP layer copies a block to its client through
// a buffer of this size.
const CopyBufSize = 256 << 10

// AdmitRead takes one store request slot and (for GET, head false) the
// copy buffer from id's shares, before a store is asked: KindOverloaded
// (503) when id's share or the whole is taken. The returned func gives
// them back (call it once the response is written).
func (g *Gateway) AdmitRead(ctx context.Context, id *access.Identity, head bool) (func(), error) {
	who := principalKey(id)
	if err := g.slots.Acquire(ctx, who, 1); err != nil {
		return nil, err
	}
	if head {
		return func() { g.slots.Release(who, 1) }, nil
	}
	if err := g.budget.Acquire(ctx, who, CopyBufSize); err != nil {
		g.slots.Release(who, 1)
		return nil, err
	}
	return func() { g.budget.Release(who, CopyBufSize); g.slots.Release(who, 1) }, nil
}

// postPiece is the unit in which a POST body is buffered and paid for.
const postPiece = 1 << 20

// Reserve takes n bytes of id's share of the memory budget (KindOverloaded
// when they are not to be had); the returned func gives them back.
func (g *Gateway) Reserve(ctx context.Context, id *access.Identity, n int64) (func(), error) {
	who := principalKey(id)
	if err := g.budget.Acquire(ctx, who, n); err != nil {
		return nil, err
	}
	return func() { g.budget.Release(who, n) }, nil
}

// PostBody is a buffered POST body: pieces taken from the budget one at a
// time, as their bytes arrive, so a client that declares 64 MiB and sends
// slowly holds only what it has sent.
type PostBody struct {
	g      *Gateway
	who    string
	pieces [][]byte
	held   int64
	hash   blockstore.Hash
}

// ReadPost buffers exactly size bytes of body, paid from id's share, and
// hashes them: a body that ends early is KindLengthMismatch (a timeout
// keeps its KindTimeout), a share that is taken KindOverloaded. Release
// the result once the block is stored.
func (g *Gateway) ReadPost(ctx context.Context, id *access.Identity, body io.Reader, size int64) (*PostBody, error) {
	pb := &PostBody{g: g, who: principalKey(id)}
	sum := md5.New()
	for left := size; left > 0; {
		n := min(left, postPiece)
		if err := g.budget.Acquire(ctx, pb.who, n); err != nil {
			pb.Release()
			return nil, err
		}
		pb.held += n
		p := make([]byte, n)
		if _, err := io.ReadFull(body, p); err != nil {
			pb.Release()
			if blockstore.Is(err, blockstore.KindTimeout) {
				return nil, err
			}
			return nil, blockstore.E("POST", blockstore.KindLengthMismatch, "request body shorter than Content-Length", err)
		}
		sum.Write(p)
		pb.pieces = append(pb.pieces, p)
		left -= n
	}
	pb.hash = blockstore.Hash(sum.Sum(nil))
	return pb, nil
}

// Hash is the MD5 of the body.
func (pb *PostBody) Hash() blockstore.Hash { return pb.hash }

// Reader returns the buffered body.
func (pb *PostBody) Reader() io.Reader {
	rs := make([]io.Reader, len(pb.pieces))
	for i, p := range pb.pieces {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}

// Release gives the buffers back to the budget.
func (pb *PostBody) Release() {
	if pb.held > 0 {
		pb.g.budget.Release(pb.who, pb.held)
		pb.held = 0
	}
	pb.pieces = nil
}
