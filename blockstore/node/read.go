package node

import (
	"context"
	"io"
	"log/slog"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// ReadRequest is a block read (GET or HEAD).
type ReadRequest struct {
	Locator blockstore.Locator
	// Token is the request's API token, for the signature check.
	Token string
	// Head asks for existence and size only: the block is Stat-ed on the
	// mounts, not read, so a HEAD is cheap and its size exact.
	Head bool
	// Off and N select bytes [Off, Off+N) of the block (N < 0: to the
	// end). They must lie within the locator's size hint.
	Off, N int64
}

// Reader delivers a block, or part of one, from the node's mounts.
type Reader struct {
	// Size is the size of the whole block; [Off, Off+N) the bytes delivered.
	Size, Off, N int64

	n       *Node
	ctx     context.Context
	h       blockstore.Hash
	head    bool
	mounts  []*mount // not yet tried, in mount order
	used    []*mount // mounts that delivered bytes
	cur     io.ReadCloser
	curM    *mount
	pos     int64
	lastErr error
	release func()
	// vouched: every copy opened so far is read through a
	// blockstore.ChunkReader, so every byte delivered was checked against
	// its chunk's CRC32C just before (stored checksums, or checksums
	// computed by the MD5 pass of a VerifyFirst mount).
	vouched bool
	// noHash: WriteTo streams without hashing the whole block; from then
	// on only chunk-checked copies may continue the stream.
	noHash bool
	// volumeVerifies: the first copy's volume checks whole reads itself
	// (blockstore.ReadVerifier), withholding the last chunk on a mismatch.
	volumeVerifies bool
	// gain computes the chunk checksums of a whole, MD5-verified read of a
	// copy that has none, to store them when the read ends cleanly.
	gain *blockstore.ChunkHasher
}

// Vouched reports whether every byte the reader delivers is checked
// against its chunk's CRC32C right before it is delivered (see
// keepwire.DataVerified); a client can then skip its own MD5.
func (r *Reader) Vouched() bool { return r.vouched && !r.head }

// Partial reports whether the reader delivers less than the whole block.
func (r *Reader) Partial() bool { return r.Off != 0 || r.N != r.Size }

// Open prepares a block read (KEEP-PROTOCOL §5.3): it checks the locator
// (GET needs a size hint, except for the empty block), the signature when
// signatures are required, takes a copy buffer from the memory budget
// (not for HEAD) and finds the first mount, in mount order, holding a copy
// of the hinted size. Errors, before any byte: KindMethodNotAllowed,
// KindNoToken, KindInvalidSignature, KindExpiredSignature, KindBadRange,
// KindOverloaded, KindNotFound (no mount has it), or the error of a
// failing volume when no mount has it (other errors win over not-found).
// The caller must Close the Reader.
func (n *Node) Open(ctx context.Context, req ReadRequest) (*Reader, error) {
	loc := req.Locator
	if !req.Head && loc.Hash != blockstore.EmptyHash && loc.Size <= 0 {
		return nil, blockstore.Errorf(blockstore.KindMethodNotAllowed, "method not allowed: GET needs a locator with a size hint (hash+size)")
	}
	if err := n.checkPermission(loc, req.Token); err != nil {
		return nil, err
	}
	if loc.Hash == blockstore.EmptyHash && loc.Size <= 0 {
		return &Reader{n: n, head: true}, nil
	}
	if req.Head {
		info, err := n.stat(ctx, loc)
		if err != nil {
			return nil, err
		}
		return &Reader{n: n, head: true, Size: info.Size, N: info.Size}, nil
	}
	cnt, err := blockstore.CheckRange(req.Off, req.N, loc.Size)
	if err != nil {
		return nil, err
	}
	release, err := n.budget.acquire(ctx, n.requestWeight())
	if err != nil {
		return nil, err
	}
	r := &Reader{n: n, ctx: ctx, h: loc.Hash, Size: loc.Size, Off: req.Off, N: cnt, pos: req.Off,
		mounts: n.order(loc.Hash, false), release: release}
	if err := r.openNext(); err != nil {
		release()
		return nil, err
	}
	return r, nil
}

// checkPermission applies the signature rules of KEEP-PROTOCOL §3.4/§3.5.
func (n *Node) checkPermission(loc blockstore.Locator, token string) error {
	if _, remote := loc.Hint('R'); remote && !loc.Signed() {
		if token == "" {
			return blockstore.Errorf(blockstore.KindNoToken, "no token provided in Authorization header")
		}
		return blockstore.Errorf(blockstore.KindBadRequest, "remote cluster not configured")
	}
	if !n.opt.RequireSignatures {
		return nil
	}
	return n.opt.Signer.Verify(loc, token)
}

// stat finds the block's size on the first mount that has a copy of the
// hinted size (any size without a hint).
func (n *Node) stat(ctx context.Context, loc blockstore.Locator) (blockstore.BlockInfo, error) {
	var lastErr error
	for _, m := range n.order(loc.Hash, false) {
		info, err := m.vol.Stat(ctx, loc.Hash)
		switch {
		case blockstore.Is(err, blockstore.KindNotFound):
		case err != nil:
			lastErr = err
		case loc.HasSize() && info.Size != loc.Size:
			if err := n.wrongSize(ctx, m, loc.Hash, info.Size, loc.Size); !blockstore.Is(err, blockstore.KindNotFound) {
				lastErr = err
			}
		default:
			return info, nil
		}
	}
	if lastErr != nil {
		return blockstore.BlockInfo{}, lastErr
	}
	return blockstore.BlockInfo{}, notFound(loc.Hash)
}

// openNext opens the next mount that has a copy of the right size, at the
// current position. A copy with chunk checksums is read through a
// blockstore.ChunkReader, its first chunk checked here, before the caller
// answers. A copy without them on a VerifyFirst mount is MD5-checked
// whole first, gains the checksums computed in that pass, and is then
// read through a ChunkReader too; elsewhere it is read raw (the caller
// hashes whole reads).
func (r *Reader) openNext() error {
	log := r.n.logFor(r.ctx)
	end := r.Off + r.N
	for len(r.mounts) > 0 {
		m := r.mounts[0]
		r.mounts = r.mounts[1:]
		// From the start of the chunk holding pos to the end of the one
		// holding the last byte wanted (n = -1: to the end of the block).
		start, n := blockstore.ChunkStart(r.pos), int64(-1)
		if e := blockstore.ChunkEnd(end, r.Size); e < r.Size {
			n = e - start
		}
		rc, info, err := m.vol.Get(r.ctx, r.h, start, n)
		switch {
		case blockstore.Is(err, blockstore.KindNotFound):
			continue
		case blockstore.Is(err, blockstore.KindCorrupt):
			r.n.countDamaged(r.ctx, m, r.h, err)
			r.lastErr = err
			continue
		case err != nil && !blockstore.Is(err, blockstore.KindBadRange):
			log.Warn("volume read failed", "mount", m.UUID, "hash", r.h.String(), "error", err.Error())
			r.lastErr = err
			continue
		case err != nil || info.Size != r.Size:
			// Truncated or extended: a damaged copy (a range past its end
			// is one too, since the locator says the block is longer).
			if rc != nil {
				rc.Close()
			}
			if err := r.n.wrongSize(r.ctx, m, r.h, info.Size, r.Size); !blockstore.Is(err, blockstore.KindNotFound) {
				r.lastErr = err
			}
			continue
		}
		sums := info.Checksums
		// An old copy is checked whole first (and gains checksums) for a
		// range read too, except on a read-only mount, where it could not
		// keep them and every range read would cost a whole read.
		if sums == nil && m.VerifyFirst && (!r.Partial() || !m.ReadOnly) {
			if sums, err = r.verifyCopy(m); err != nil {
				rc.Close()
				r.lastErr = err
				continue
			}
			r.n.storeSums(r.ctx, m, r.h, sums)
		}
		var src io.ReadCloser
		if sums != nil {
			cr := blockstore.NewChunkReader(rc, sums, r.pos, end-r.pos, "the copy on mount "+m.UUID)
			if err := cr.Prime(); err != nil {
				cr.Close()
				if blockstore.Is(err, blockstore.KindCorrupt) {
					r.n.countDamaged(r.ctx, m, r.h, err)
				} else {
					log.Warn("volume read failed", "mount", m.UUID, "hash", r.h.String(), "error", err.Error())
				}
				r.lastErr = err
				continue
			}
			src = cr
		} else {
			if r.noHash {
				// The stream is not being hashed: only chunk-checked
				// copies may continue it.
				rc.Close()
				continue
			}
			if skip := r.pos - start; skip > 0 {
				if _, err := io.CopyN(io.Discard, rc, skip); err != nil {
					rc.Close()
					r.lastErr = err
					continue
				}
			}
			src = rc
		}
		first := r.cur == nil && r.curM == nil
		if first {
			r.vouched = sums != nil
			if rv, ok := blockstore.As[blockstore.ReadVerifier](m.Volume); ok && sums == nil && r.pos == 0 && !r.Partial() {
				r.volumeVerifies = rv.VerifiesFullReads()
			}
			if sums == nil && !r.Partial() {
				r.gain = &blockstore.ChunkHasher{}
			}
		} else {
			r.vouched = r.vouched && sums != nil
			r.volumeVerifies = false
			r.gain = nil
		}
		r.cur, r.curM = src, m
		return nil
	}
	if r.lastErr != nil {
		return r.lastErr
	}
	return notFound(r.h)
}

// verifyCopy reads mount m's whole copy, checks it hashes to the block's
// name, and returns its chunk checksums. A bad copy is logged, counted
// and remembered.
func (r *Reader) verifyCopy(m *mount) (*blockstore.Checksums, error) {
	rc, _, err := m.vol.Get(r.ctx, r.h, 0, -1)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	bp := r.n.getBuf()
	defer r.n.putBuf(bp)
	var sums blockstore.ChunkHasher
	_, err = io.CopyBuffer(&sums, blockstore.NewVerifyingReader(rc, r.h, r.Size), *bp)
	if err == nil {
		return sums.Sum(), nil
	}
	if k := blockstore.KindOf(err); k == blockstore.KindHashMismatch || k == blockstore.KindLengthMismatch {
		err = blockstore.E("verify", blockstore.KindCorrupt, "checksum mismatch in stored data", err)
		r.n.metrics.corrupt.WithLabelValues(m.UUID).Inc()
		r.n.bad.add(m.UUID, r.h)
		r.n.logFor(r.ctx).Error("corrupt block: stored data does not hash to its name; trying the next copy", "mount", m.UUID, "hash", r.h.String())
	}
	return nil, err
}

// storeSums gives a copy that had none the checksums of its verified
// bytes; failing to is logged, not an error (the copy is then verified by
// its MD5 again next time).
func (n *Node) storeSums(ctx context.Context, m *mount, h blockstore.Hash, sums *blockstore.Checksums) {
	err := m.vol.SetChecksums(ctx, h, sums)
	switch {
	case err == nil:
		n.metrics.sumsGained.WithLabelValues(m.UUID).Inc()
	case blockstore.Is(err, blockstore.KindReadOnly):
	default:
		n.logFor(ctx).Warn("cannot store the chunk checksums of a verified block", "mount", m.UUID, "hash", h.String(), "error", err.Error())
	}
}

// Read reads the selected bytes. When a volume fails, or its copy ends
// early, it continues from the next mount at the same offset.
func (r *Reader) Read(p []byte) (int, error) {
	b, err := r.next(p)
	return copy(p, b), err
}

// next returns the next bytes: read into p from a raw copy, or a piece of
// a ChunkReader's buffer (valid until the next call) of at most len(p)
// bytes. When a volume fails, or its copy ends early, it continues from
// the next mount at the same offset.
func (r *Reader) next(p []byte) ([]byte, error) {
	end := r.Off + r.N
	for {
		if r.head || r.pos >= end {
			return nil, io.EOF
		}
		if r.cur == nil {
			if err := r.openNext(); err != nil {
				return nil, err
			}
		}
		if rem := end - r.pos; int64(len(p)) > rem {
			p = p[:rem]
		}
		var b []byte
		var err error
		if cr, ok := r.cur.(*blockstore.ChunkReader); ok {
			b, err = cr.Next(len(p))
		} else {
			var k int
			k, err = r.cur.Read(p)
			b = p[:k]
		}
		k := len(b)
		if r.gain != nil {
			r.gain.Write(b)
		}
		r.pos += int64(k)
		if k > 0 && (len(r.used) == 0 || r.used[len(r.used)-1] != r.curM) {
			r.used = append(r.used, r.curM)
		}
		if err == io.EOF && r.pos < end {
			err = blockstore.Errorf(blockstore.KindCorrupt, "stored copy ended after %d of %d bytes", r.pos, r.Size)
		}
		if err != nil && err != io.EOF {
			if blockstore.Is(err, blockstore.KindCorrupt) {
				r.n.countDamaged(r.ctx, r.curM, r.h, err)
			}
			r.n.logFor(r.ctx).Warn("volume read failed mid-block; trying the next mount", "mount", r.curM.UUID,
				"hash", r.h.String(), "offset", r.pos, "error", err.Error())
			r.cur.Close()
			r.cur, r.lastErr = nil, err
			if k == 0 {
				continue
			}
		}
		return b, nil
	}
}

// WriteTo copies the selected bytes to w. A chunk-checked stream
// (Vouched) is sent as it is checked. Otherwise a whole-block read passes
// through blockstore.NewVerifyingWriter: when the data does not hash to
// the block's name, the last chunk is withheld and a KindCorrupt error
// returned (the copy is logged, counted, and tried last from then on). A
// whole read of a copy without checksums that ends verified gives the
// copy its checksums.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	if r.head || r.N == 0 {
		return 0, nil
	}
	var vw *blockstore.VerifyingWriter
	dst := w
	switch {
	case r.Vouched(), r.volumeVerifies && !r.Partial():
		r.noHash = true
	case !r.Partial():
		vw = blockstore.NewVerifyingWriter(w, r.h, r.Size)
		dst = vw
	}
	bp := r.n.getBuf()
	defer r.n.putBuf(bp)
	buf := *bp
	var written int64
	defer func() { r.n.metrics.bytesOut.Add(float64(written)) }()
	for {
		b, rerr := r.next(buf)
		if k := len(b); k > 0 {
			wk, werr := dst.Write(b)
			written += int64(wk)
			if werr != nil {
				if blockstore.Is(werr, blockstore.KindCorrupt) {
					r.reportCorrupt(werr)
				}
				return written, werr
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return written, rerr
		}
	}
	if vw != nil {
		if err := vw.Finish(); err != nil {
			r.reportCorrupt(err)
			return written, err
		}
	}
	if r.gain != nil && len(r.used) == 1 && (vw != nil || r.volumeVerifies) {
		r.n.storeSums(r.ctx, r.used[0], r.h, r.gain.Sum())
	}
	return written, nil
}

// wrongSize handles a copy whose size differs from the locator's hint. If
// the copy still hashes to the block's name, the hint was wrong: not found
// (there is no block of that size). Otherwise the copy is damaged
// (truncated or extended), like a copy that fails its checksum: counted,
// remembered, logged with the mount, and KindCorrupt when no good copy
// exists. Only this rare path reads the copy.
func (n *Node) wrongSize(ctx context.Context, m *mount, h blockstore.Hash, size, want int64) error {
	if rc, _, err := m.vol.Get(ctx, h, 0, -1); err == nil {
		_, err = io.Copy(io.Discard, blockstore.NewVerifyingReader(rc, h, size))
		rc.Close()
		if err == nil {
			return notFound(h)
		}
	}
	err := blockstore.Errorf(blockstore.KindCorrupt, "checksum mismatch in stored data: the stored copy is %d bytes, the block %d", size, want)
	n.countDamaged(ctx, m, h, err)
	return err
}

// countDamaged counts, remembers and logs one damaged copy on mount m.
func (n *Node) countDamaged(ctx context.Context, m *mount, h blockstore.Hash, err error) {
	n.metrics.corrupt.WithLabelValues(m.UUID).Inc()
	n.bad.add(m.UUID, h)
	n.logFor(ctx).Error("corrupt block: damaged copy (its data is not the block)", "mount", m.UUID, "hash", h.String(), "error", err.Error())
}

func (r *Reader) reportCorrupt(err error) {
	for _, m := range r.used {
		r.n.countDamaged(r.ctx, m, r.h, err)
	}
}

// Close releases the reader's volume stream and memory budget.
func (r *Reader) Close() error {
	if r.cur != nil {
		r.cur.Close()
		r.cur = nil
	}
	if r.release != nil {
		r.release()
		r.release = nil
	}
	return nil
}

func (n *Node) getBuf() *[]byte {
	if b, ok := n.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, n.opt.BufferSize)
	return &b
}

func (n *Node) putBuf(b *[]byte) { n.bufs.Put(b) }

// logFor returns the node's logger with the request id of ctx.
func (n *Node) logFor(ctx context.Context) *slog.Logger {
	if ctx == nil {
		return n.log
	}
	if id := httpserver.RequestIDFrom(ctx); id != "" {
		return n.log.With("request_id", id)
	}
	return n.log
}
