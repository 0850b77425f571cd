package gateway

import (
	"io"
	"net/http"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
)

// A replicated PUT is MD5-hashed once in the cluster: when the gateway has
// the stores' write token, it checks the body's MD5 itself (the Tee
// withholds the last chunk until it matches) and computes the chunk
// checksums in the same pass. It sends them to each store in the
// keepwire.ChunkChecksums trailer of a chunked PUT to /<hash>+<size>; a
// keepgate store that sees its write token and the trailer checks every
// chunk's CRC32C instead of hashing MD5 again, and commits nothing unless
// all match (so a byte damaged on the way, or in either side's memory after
// the hash, is refused). A store that does not know the trailer — an
// earlier keepgate, Arvados — ignores it and MD5-verifies the body as it
// always did; chunked bodies with a size hint are part of the protocol.

// vouches reports whether this PUT takes the checksum path: the gateway
// holds the stores' write token and the block is not empty.
func (w *putRun) vouches() bool { return w.g.opt.StoreWriteToken != "" && w.req.Size > 0 }

// withChecksumTrailer makes req the checksum form of a PUT: chunked (the
// only way to send a trailer), with sums() — called once the body has been
// sent to its end — in the ChunkChecksums trailer.
func withChecksumTrailer(req *http.Request, h blockstore.Hash, body io.Reader, sums func() *blockstore.Checksums) {
	req.ContentLength = -1
	req.Trailer = http.Header{keepwire.ChunkChecksums: nil}
	req.Body = &trailerBody{r: body, fill: func() {
		if s := sums(); s != nil {
			req.Trailer.Set(keepwire.ChunkChecksums, s.EncodeText(h))
		}
	}}
}

// trailerBody is a request body that fills the trailer when its reader
// ends cleanly: the transport writes the trailer after the last body byte.
type trailerBody struct {
	r    io.Reader
	fill func()
	done bool
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && !b.done {
		b.done = true
		b.fill()
	}
	return n, err
}

// WriteTo keeps the Tee's zero-copy path (io.Copy prefers it).
func (b *trailerBody) WriteTo(w io.Writer) (int64, error) {
	wt, ok := b.r.(io.WriterTo)
	if !ok {
		return io.Copy(w, readerOnly{b})
	}
	n, err := wt.WriteTo(w)
	if err == nil && !b.done {
		b.done = true
		b.fill()
	}
	return n, err
}

func (b *trailerBody) Close() error { return nil }

// readerOnly hides a reader's WriteTo.
type readerOnly struct{ io.Reader }

// hashingBody feeds what is read through it into a ChunkHasher.
type hashingBody struct {
	r    io.Reader
	sums *blockstore.ChunkHasher
}

func (b hashingBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.sums.Write(p[:n])
	return n, err
}
