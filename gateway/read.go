package gateway

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
)

// What the HTTP layer reads about an open Block besides its bytes.

// Trusted reports whether the stores vouched for every byte they sent
// (keepwire.DataVerified: each chunk checked right before it was sent),
// so the gateway did not hash them; a gateway in front of this one need
// not either.
func (b *Block) Trusted() bool { return b.trusted }

// Hash is the hash of the block being read.
func (b *Block) Hash() blockstore.Hash { return b.req.Locator.Hash }

// CorruptReads counts block reads whose bytes did not match the hash
// (keepproxy_corrupt_reads_total): Open counts a block every store holds
// corrupt, the HTTP layer a body that failed its check while it was sent.
func (g *Gateway) CorruptReads() prometheus.Counter { return g.metrics.corrupt }

// CheckBlock checks that the block of req.Locator (signed for
// req.Identity, as an access key's GET is) is in the principal's storage,
// with a HEAD through the same routing, isolation and store-slot shares as
// a client's HEAD: nil when a store has it, KindNotFound when none of the
// storage's stores has it, the stores' other answers as for a HEAD. The
// empty block needs no store.
func (g *Gateway) CheckBlock(ctx context.Context, req GetRequest) error {
	if req.Locator.Hash == blockstore.EmptyHash {
		return nil
	}
	req.Head = true
	if err := g.toStores(&req); err != nil {
		return err
	}
	release, err := g.AdmitRead(ctx, req.Identity, true)
	if err != nil {
		return err
	}
	defer release()
	blk, err := g.Open(ctx, req)
	if err != nil {
		return err
	}
	return blk.Close()
}
