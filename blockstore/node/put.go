package node

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// PutRequest is a block write.
type PutRequest struct {
	Hash blockstore.Hash
	// Body is read once, to its end. It is never buffered whole.
	Body io.Reader
	// Size is the declared body length (Content-Length); -1 if unknown.
	Size int64
	// SizeHint is the size in the request's locator; 0 or -1: none. When
	// the body length is unknown (chunked), the body must have this length.
	SizeHint int64
	// Classes are the requested storage classes; empty: one copy anywhere.
	Classes []string
	// Vouched, when set, returns the chunk checksums that a trusted
	// sender (keepproxy with the store write token) computed while it
	// checked the body's MD5 itself; it is called once the body has been
	// read to its end. The volumes then check every chunk's CRC32C against
	// them instead of hashing MD5 (blockstore.Vouched). Only for bodies of
	// known size; nil: the body is MD5-verified.
	Vouched func() (*blockstore.Checksums, error)
}

// PutResult says where the block is stored now.
type PutResult struct {
	Size int64
	// Replicas is the sum of the Replication of the mounts holding it.
	Replicas int
	// Classes maps every class of every mount holding it to the number of
	// replicas in that class.
	Classes map[string]int
}

// Put stores a block (KEEP-PROTOCOL §5.4). It writes one copy per
// requested storage class not yet held (one copy in all when no class is
// requested), on writable mounts in mount order. The body streams into the
// first mount; further copies are copied from it, volume to volume. A
// block already held on a wanted mount is not rewritten: the body is read
// and verified, then that copy is touched.
//
// A mount that fails before reading any of the body is skipped for the
// next one; once the body is partly consumed it cannot be replayed. The
// write succeeds when any copy is stored. Errors: KindTooLarge (declared
// size over 64 MiB), KindHashMismatch / KindLengthMismatch (bad body),
// KindTimeout (stalled body), KindCanceled (client gone), KindOverloaded
// (memory budget spent), 507 kinds (KindReadOnly: no writable mount;
// KindFull: every attempt found a full volume, or no mount serves the
// classes), KindUnavailable (volumes failed otherwise).
func (n *Node) Put(ctx context.Context, req PutRequest) (PutResult, error) {
	if req.SizeHint > 0 {
		if req.Size >= 0 && req.Size != req.SizeHint {
			return PutResult{}, blockstore.Errorf(blockstore.KindLengthMismatch, "content length %d did not match specified data size %d", req.Size, req.SizeHint)
		}
		req.Size = req.SizeHint
	}
	if req.Size > blockstore.MaxBlockSize {
		return PutResult{}, blockstore.Errorf(blockstore.KindTooLarge, "request entity too large: %d bytes; blocks are at most %d bytes", req.Size, blockstore.MaxBlockSize)
	}
	writable := n.order(req.Hash, true)
	if len(writable) == 0 {
		return PutResult{}, blockstore.Errorf(blockstore.KindReadOnly, "insufficient storage: this keepstore has no writable volume")
	}
	if len(req.Classes) > 0 && !anyCovers(writable, req.Classes) {
		return PutResult{}, blockstore.Errorf(blockstore.KindFull, "insufficient storage: no writable volume serves storage classes %s", strings.Join(req.Classes, ", "))
	}
	release, err := n.budget.acquire(ctx, n.requestWeight())
	if err != nil {
		return PutResult{}, err
	}
	defer release()
	br := n.getBufReader(req.Body)
	defer n.putBufReader(br)
	body := &trackedReader{r: br}
	defer func() { n.metrics.bytesIn.Add(float64(body.n)) }()

	s := &putState{n: n, h: req.Hash, want: req.Classes, size: req.Size}
	if req.Vouched != nil && req.Size >= 0 {
		s.vouched = req.Vouched
	}
	if s.findExisting(ctx, writable) {
		err = s.verifyAndTouch(ctx, body)
	} else {
		err = s.writeBody(ctx, body, writable)
	}
	if err != nil {
		return PutResult{}, err
	}
	by := "md5"
	if s.vouched != nil {
		by = "chunk_checksums"
	}
	n.metrics.putChecks.WithLabelValues(by).Inc()
	s.copyToOthers(ctx, writable)
	return s.result(), nil
}

func anyCovers(ms []*mount, classes []string) bool {
	for _, m := range ms {
		if m.covers(classes) {
			return true
		}
	}
	return false
}

// putState tracks one Put: the mounts holding the block so far and the
// failed attempts.
type putState struct {
	n       *Node
	h       blockstore.Hash
	want    []string
	size    int64
	holders []*mount
	errs    []error
	vouched func() (*blockstore.Checksums, error)
}

// in is what the volumes read the body from: the body itself, or the body
// vouched for by its sender's checksums.
func (s *putState) in(body io.Reader) io.Reader {
	if s.vouched == nil {
		return body
	}
	return &blockstore.Vouched{R: body, Sums: s.vouched}
}

func (s *putState) holds(m *mount) bool {
	for _, h := range s.holders {
		if h == m {
			return true
		}
	}
	return false
}

func (s *putState) unmet() []string {
	var out []string
	for _, c := range s.want {
		held := false
		for _, h := range s.holders {
			held = held || h.classes[c]
		}
		if !held {
			out = append(out, c)
		}
	}
	return out
}

// needs reports whether m should hold a copy: with no classes requested,
// when nothing holds one yet; else when m serves a class not yet held.
func (s *putState) needs(m *mount) bool {
	if s.holds(m) {
		return false
	}
	if len(s.want) == 0 {
		return len(s.holders) == 0
	}
	return m.covers(s.unmet())
}

// findExisting adds to holders the wanted mounts that already have a
// sound copy (right size, not known corrupt). It reports whether any has.
func (s *putState) findExisting(ctx context.Context, writable []*mount) bool {
	for _, m := range writable {
		if !s.needs(m) || s.n.bad.has(m.UUID, s.h) {
			continue
		}
		info, err := m.vol.Stat(ctx, s.h)
		if err != nil || (s.size >= 0 && info.Size != s.size) {
			continue
		}
		s.holders = append(s.holders, m)
	}
	return len(s.holders) > 0
}

// verifyAndTouch reads and verifies the body, then touches the existing
// copies; those that cannot be touched (trashed meanwhile) do not count.
func (s *putState) verifyAndTouch(ctx context.Context, body *trackedReader) error {
	if _, err := io.Copy(io.Discard, blockstore.NewPutReader(s.in(body), s.h, s.size)); err != nil {
		if cerr := s.clientError(ctx, err, body); cerr != nil {
			return cerr
		}
		return blockstore.E("node.Put", err)
	}
	s.size = body.n
	kept := s.holders[:0]
	for _, m := range s.holders {
		if err := m.vol.Touch(ctx, s.h); err != nil {
			s.n.logFor(ctx).Warn("touching an existing copy failed", "mount", m.UUID, "hash", s.h.String(), "error", err.Error())
			s.errs = append(s.errs, err)
			continue
		}
		kept = append(kept, m)
	}
	s.holders = kept
	if len(kept) == 0 {
		return &blockstore.Error{Op: "node.Put", Kind: blockstore.KindUnavailable,
			Msg: "volume unavailable: the stored copy changed during the write; retry", Err: errors.Join(s.errs...)}
	}
	return nil
}

// writeBody streams the body into the first wanted mount that takes it.
func (s *putState) writeBody(ctx context.Context, body *trackedReader, writable []*mount) error {
	for _, m := range writable {
		if !s.needs(m) {
			continue
		}
		err := m.vol.Put(ctx, s.h, s.in(body), s.size)
		if err == nil {
			s.holders = append(s.holders, m)
			s.n.bad.clear(m.UUID, s.h)
			if s.size < 0 {
				s.size = body.n
			}
			return nil
		}
		if cerr := s.clientError(ctx, err, body); cerr != nil {
			return cerr
		}
		s.n.logFor(ctx).Warn("volume write failed", "mount", m.UUID, "hash", s.h.String(), "kind", blockstore.KindOf(err).String(), "error", err.Error())
		s.errs = append(s.errs, err)
		if body.n > 0 {
			break // the body is partly consumed: no other mount can have it
		}
	}
	return s.failure()
}

// clientError returns the client's fault behind a failed write, if it was
// one: a body that does not match, stalls, ends early or breaks off.
func (s *putState) clientError(ctx context.Context, err error, body *trackedReader) error {
	switch blockstore.KindOf(err) {
	case blockstore.KindHashMismatch, blockstore.KindLengthMismatch, blockstore.KindTooLarge:
		return err
	}
	if berr := body.err; berr != nil {
		switch {
		case blockstore.Is(berr, blockstore.KindTimeout):
			return berr
		case errors.Is(berr, io.ErrUnexpectedEOF):
			return blockstore.Errorf(blockstore.KindLengthMismatch, "content length %d did not match specified data size %d: the request body ended early", body.n, s.size)
		case ctx.Err() != nil:
			return blockstore.E("node.Put", blockstore.KindCanceled, ctx.Err())
		default:
			return &blockstore.Error{Op: "node.Put", Kind: blockstore.KindCanceled, Msg: "client connection failed while sending the body", Err: berr}
		}
	}
	if ctx.Err() != nil {
		return blockstore.E("node.Put", blockstore.KindCanceled, ctx.Err())
	}
	return nil
}

// copyToOthers adds copies for requested classes still unmet, copying
// from a mount that holds the block (never from RAM). Failures are logged:
// the write already succeeded.
func (s *putState) copyToOthers(ctx context.Context, writable []*mount) {
	if len(s.want) == 0 {
		return
	}
	for _, m := range writable {
		if !s.needs(m) {
			continue
		}
		if err := s.copyTo(ctx, s.holders[0], m); err != nil {
			s.n.logFor(ctx).Warn("copying to a second volume failed", "from", s.holders[0].UUID, "to", m.UUID, "hash", s.h.String(), "error", err.Error())
			continue
		}
		s.holders = append(s.holders, m)
		s.n.bad.clear(m.UUID, s.h)
	}
}

// copyTo copies the block volume to volume: through a ChunkReader, the
// copy's checksums vouching for it, when it has them (no MD5 pass), else
// MD5-verified by the receiving volume.
func (s *putState) copyTo(ctx context.Context, from, to *mount) error {
	rc, info, err := from.vol.Get(ctx, s.h, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	if sums := info.Checksums; sums != nil {
		cr := blockstore.NewChunkReader(rc, sums, 0, info.Size, "the copy on mount "+from.UUID)
		defer cr.Close()
		return to.vol.Put(ctx, s.h, &blockstore.Vouched{R: cr, Sums: func() (*blockstore.Checksums, error) { return sums, nil }}, info.Size)
	}
	return to.vol.Put(ctx, s.h, rc, info.Size)
}

// failure is the error when no copy could be stored: 507 when every
// attempt found a full or read-only volume, 503 otherwise.
func (s *putState) failure() error {
	full := true
	for _, err := range s.errs {
		k := blockstore.KindOf(err)
		full = full && (k == blockstore.KindFull || k == blockstore.KindReadOnly)
	}
	if full {
		return &blockstore.Error{Op: "node.Put", Kind: blockstore.KindFull, Msg: "insufficient storage: every writable volume is full", Err: errors.Join(s.errs...)}
	}
	return &blockstore.Error{Op: "node.Put", Kind: blockstore.KindUnavailable, Msg: "volume unavailable", Err: errors.Join(s.errs...)}
}

func (s *putState) result() PutResult {
	r := PutResult{Size: s.size, Classes: map[string]int{}}
	for _, m := range s.holders {
		r.Replicas += m.Replication
		for _, c := range m.Classes {
			r.Classes[c] += m.Replication
		}
	}
	return r
}

// putReadBuf is the size of a PUT body's read buffer: no larger than what
// the volumes read at a time (dirvolume: 256 KiB), so that their reads go
// straight from the connection into their buffers instead of through a
// copy; smaller reads (a volume's last piece, S3 uploads) are still
// gathered.
const putReadBuf = 256 << 10

func (n *Node) getBufReader(r io.Reader) *bufio.Reader {
	if br, ok := n.bufReaders.Get().(*bufio.Reader); ok {
		br.Reset(r)
		return br
	}
	return bufio.NewReaderSize(r, min(n.opt.BufferSize, putReadBuf))
}

func (n *Node) putBufReader(br *bufio.Reader) {
	br.Reset(nil)
	n.bufReaders.Put(br)
}
