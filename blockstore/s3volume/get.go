package s3volume

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
)

// Get implements blockstore.Volume. A missing block is reported before any
// byte, from the GET's own answer. A read of the whole block is verified
// while streaming: the reader withholds its final chunk and fails with
// KindCorrupt unless the bytes hash to h. Range reads cannot be checked
// against the block hash and are returned as stored. The BlockInfo's Mtime
// is the data object's LastModified (its last write), which saves a
// request; Stat reports the recent/ marker's time.
func (v *Volume) Get(ctx context.Context, h blockstore.Hash, off, n int64) (io.ReadCloser, blockstore.BlockInfo, error) {
	const op = "s3volume.Get"
	if off < 0 {
		_, err := blockstore.CheckRange(off, n, 0)
		return nil, blockstore.BlockInfo{}, blockstore.E(op, err)
	}
	if n == 0 {
		return v.emptyRead(ctx, op, h, off, n)
	}
	var opts minio.GetObjectOptions
	switch {
	case off == 0 && n < 0: // the whole block: no Range header
	case n < 0:
		opts.SetRange(off, 0)
	default:
		opts.SetRange(off, off+n-1)
	}
	// The checksums first: fetching them while the data's response holds
	// a concurrency slot could wait for a slot forever.
	sums := v.getSums(ctx, h, -1)
	var (
		rc  io.ReadCloser
		oi  minio.ObjectInfo
		hdr http.Header
	)
	release, err := v.callHold(ctx, opGet, nil, true, func(ctx context.Context) (err error) {
		rc, oi, hdr, err = v.core.GetObject(ctx, v.bucket, v.dataKey(h), opts)
		return err
	})
	if err != nil {
		if kind, _ := classify(err); kind == blockstore.KindBadRange {
			// S3 refuses any range of an empty object and a range starting
			// at the end; CheckRange allows both when nothing is asked for.
			return v.emptyRead(ctx, op, h, off, n)
		}
		return nil, blockstore.BlockInfo{}, v.fail(op, err)
	}
	total, err := totalSize(oi.Size, hdr)
	if err == nil && hdr.Get("Content-Range") == "" && (off > 0 || n >= 0 && n < total) {
		// A server may answer a range request with the whole object; only
		// a range covering the whole object may be served from that.
		err = blockstore.E(op, fmt.Sprintf("S3 server of %s ignored the Range of a partial read", v.id))
	}
	if err == nil && total > blockstore.MaxBlockSize {
		err = blockstore.E(op, blockstore.KindTooLarge, fmt.Sprintf(
			"object %s in %s is larger than %d bytes, so it is not a valid block: move it out of the volume",
			v.dataKey(h), v.id, blockstore.MaxBlockSize))
	}
	if err != nil {
		rc.Close()
		release()
		return nil, blockstore.BlockInfo{}, err
	}
	info := blockstore.BlockInfo{Hash: h, Size: total, Mtime: mtimeOf(oi.LastModified)}
	if sums.Valid(total) {
		info.Checksums = sums
	}
	g := &getReader{v: v, h: h, rc: rc, r: rc, release: release}
	if off == 0 && oi.Size == total && info.Checksums == nil {
		g.r = blockstore.NewVerifyingReader(rc, h, total)
	}
	return g, info, nil
}

// emptyRead answers a Get that asks for no bytes (or that S3 refused as a
// range): it checks that the block exists and that the range is valid.
func (v *Volume) emptyRead(ctx context.Context, op string, h blockstore.Hash, off, n int64) (io.ReadCloser, blockstore.BlockInfo, error) {
	oi, err := v.head(ctx, v.dataKey(h))
	if err != nil {
		return nil, blockstore.BlockInfo{}, v.fail(op, err)
	}
	info := blockstore.BlockInfo{Hash: h, Size: oi.Size, Mtime: mtimeOf(oi.LastModified)}
	if _, err := blockstore.CheckRange(off, n, oi.Size); err != nil {
		return nil, info, blockstore.E(op, err)
	}
	return io.NopCloser(strings.NewReader("")), info, nil
}

// totalSize is the object's size: from Content-Range for a range
// response, else the body's length.
func totalSize(length int64, hdr http.Header) (int64, error) {
	cr := hdr.Get("Content-Range")
	if cr == "" {
		return length, nil
	}
	i := strings.LastIndexByte(cr, '/')
	total, err := strconv.ParseInt(cr[i+1:], 10, 64)
	if i < 0 || err != nil || total < 0 {
		return 0, blockstore.E("s3volume.Get", fmt.Sprintf("S3 server sent an invalid Content-Range %q", cr))
	}
	return total, nil
}

// getReader is the body of a Get. It holds a concurrency slot until
// closed.
type getReader struct {
	v       *Volume
	h       blockstore.Hash
	rc      io.ReadCloser // the response body
	r       io.Reader     // rc, or a verifying reader over it
	release func()
	err     error // sticky
	once    sync.Once
}

func (g *getReader) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	g.v.metrics.bytesIn.Add(float64(n))
	if err != nil && err != io.EOF {
		g.err = g.v.readFail(g.h, err)
		return n, g.err
	}
	return n, err
}

// Close releases the response and the concurrency slot; it is safe to
// call twice.
func (g *getReader) Close() error {
	var err error
	g.once.Do(func() {
		err = g.rc.Close()
		g.release()
		if g.err == nil {
			g.err = blockstore.E("s3volume.Get", "read after Close")
		}
	})
	return err
}

// readFail classifies an error while reading a block's body: a body that
// does not hash to h or has the wrong length is corrupt; anything else is
// the caller's context or the connection.
func (v *Volume) readFail(h blockstore.Hash, err error) error {
	const op = "s3volume.Get"
	switch blockstore.KindOf(err) {
	case blockstore.KindHashMismatch, blockstore.KindLengthMismatch:
		return blockstore.E(op, blockstore.KindCorrupt, fmt.Sprintf(
			"checksum mismatch in stored data: object %s in %s does not hash to its name: delete it so that another copy is used",
			v.dataKey(h), v.id), err)
	}
	return v.fail(op, err)
}

// Stat implements blockstore.Volume: the size is the data object's, the
// mtime the recent/ marker's LastModified (the data object's when there is
// no marker), in whole seconds.
func (v *Volume) Stat(ctx context.Context, h blockstore.Hash) (blockstore.BlockInfo, error) {
	const op = "s3volume.Stat"
	oi, err := v.head(ctx, v.dataKey(h))
	if err != nil {
		return blockstore.BlockInfo{}, v.fail(op, err)
	}
	if oi.Size > blockstore.MaxBlockSize {
		return blockstore.BlockInfo{}, blockstore.E(op, blockstore.KindTooLarge, fmt.Sprintf(
			"object %s in %s is larger than %d bytes, so it is not a valid block: move it out of the volume",
			v.dataKey(h), v.id, blockstore.MaxBlockSize))
	}
	mtime, err := v.mtime(ctx, op, h, oi.LastModified)
	if err != nil {
		return blockstore.BlockInfo{}, err
	}
	return blockstore.BlockInfo{Hash: h, Size: oi.Size, Mtime: mtime}, nil
}

// mtime is the block's mtime: its marker's LastModified, or fallback (the
// data object's) when it has none.
func (v *Volume) mtime(ctx context.Context, op string, h blockstore.Hash, fallback time.Time) (time.Time, error) {
	mi, err := v.head(ctx, v.markerKey(h))
	switch {
	case isNotFound(err):
		return mtimeOf(fallback), nil
	case err != nil:
		return time.Time{}, v.fail(op, err)
	}
	return mtimeOf(mi.LastModified), nil
}

// head returns the metadata of key, with S3 errors unclassified.
func (v *Volume) head(ctx context.Context, key string) (minio.ObjectInfo, error) {
	var oi minio.ObjectInfo
	err := v.call(ctx, opHead, nil, func(ctx context.Context) (err error) {
		oi, err = v.core.StatObject(ctx, v.bucket, key, minio.StatObjectOptions{})
		return err
	})
	return oi, err
}

// isNotFound reports whether err says the object does not exist.
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	kind, _ := classify(err)
	return kind == blockstore.KindNotFound
}

// VerifiesFullReads implements blockstore.ReadVerifier: whole-block reads
// of a block without chunk checksums are MD5-checked while streaming, the
// last chunk withheld on a mismatch (with checksums, the caller checks
// every chunk instead).
func (v *Volume) VerifiesFullReads() bool { return true }
