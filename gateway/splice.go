package gateway

import (
	"io"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/rawhttp"
)

// spliceSegment is how much of a block one splice moves before the
// client's write deadline is extended again: a client must take 1 MiB
// within the body idle timeout (the copy path's rule is per 256 KiB
// write).
const spliceSegment = 1 << 20

// CanSplice reports whether the rest of the block can go from the store's
// connection to the client's without passing through the gateway's
// memory: the stores vouch for every byte (keepwire.DataVerified), so the
// gateway need not look at them; the client's connection is plain TCP
// (clientTLS false: TLS needs the bytes in user space); and the store's
// answer came through rawhttp.
func (b *Block) CanSplice(clientTLS bool) bool {
	if !b.trusted || clientTLS || b.req.Head {
		return false
	}
	_, ok := b.resp.Body.(*rawhttp.Body)
	return ok
}

// SpliceTo sends the rest of the block to w in segments of at most 1 MiB.
// Whenever what it was granted is sent, next(want) is asked how much to
// send now (at most want, more than 0): it extends the client's deadline
// and waits for a rate cap's tokens; its error (the request ended while
// waiting) ends the response. SpliceTo fails over to the next store (with a
// Range request, as readSplice does) when a store ends early or fails. An
// error that is certainly the client's (a broken pipe, its write
// deadline) ends the response at once.
//
// splice(2) does not say which side an error came from; any other error is
// taken to be the store's, so a client that reset its connection costs
// one more store request, whose write then fails with a broken pipe.
func (b *Block) SpliceTo(w io.Writer, next func(want int64) (int64, error)) (int64, error) {
	var sent int64
	var paid int64 // granted by next and not sent yet
	for b.read < b.Length {
		if paid == 0 {
			var err error
			if paid, err = next(min(spliceSegment, b.Length-b.read)); err != nil {
				return sent, err
			}
		}
		want := min(paid, b.Length-b.read)
		raw, ok := b.resp.Body.(*rawhttp.Body)
		if !ok {
			// A failover store answered through net/http (a unix socket):
			// copy this segment; readSplice counts and fails over itself.
			n, err := io.CopyN(w, readerFunc(b.readSplice), want)
			sent, paid = sent+n, paid-n
			if err != nil {
				return sent, err
			}
			continue
		}
		n, err := raw.SpliceTo(w, want)
		b.read += n
		b.g.metrics.bytesSpliced.Add(float64(n))
		sent, paid = sent+n, paid-n
		if err == nil {
			continue
		}
		if b.ctx.Err() != nil {
			return sent, blockstore.E("gateway.Read", blockstore.KindCanceled, b.ctx.Err())
		}
		if rawhttp.IsDestinationError(b.ctx, err) {
			return sent, &blockstore.Error{Op: "gateway.Read", Kind: blockstore.KindCanceled, Msg: "client stopped reading", Err: err}
		}
		svc := b.order[b.cur]
		b.g.metrics.upstreamFailures.WithLabelValues(svc.UUID, "GET").Inc()
		b.g.log.Warn("store failed mid-body; resuming from the next store", "request_id", b.reqID, "store", svc.UUID, "block", b.req.Locator.Hash.String(), "offset", b.Offset+b.read, "error", errString(err))
		if ferr := b.failover(); ferr != nil {
			return sent, ferr
		}
	}
	return sent, nil
}
