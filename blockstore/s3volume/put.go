package s3volume

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
)

// Put implements blockstore.Volume: it streams r through a verifying
// reader into a single PUT of the data object with Content-MD5 set to h,
// then rewrites the block's recent/ marker. See the package doc for why
// nothing unverified can be stored.
func (v *Volume) Put(ctx context.Context, h blockstore.Hash, r io.Reader, size int64) error {
	const op = "s3volume.Put"
	if size > blockstore.MaxBlockSize {
		return blockstore.E(op, blockstore.KindTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}
	mu := v.lock(h)
	mu.RLock()
	defer mu.RUnlock()
	vr := blockstore.NewPutReader(r, h, size)
	var err error
	switch {
	case size == 0:
		err = v.putEmpty(ctx, op, h, vr)
	case size < 0:
		err = v.putUnknownSize(ctx, op, h, vr)
	default:
		err = v.putSized(ctx, op, h, vr, size)
	}
	if err != nil {
		return err
	}
	if sums := vr.Checksums(); sums != nil && size != 0 {
		// The block is visible already; without its checksums it is only
		// verified by MD5 (and regains them), so a failure here is not one
		// of the Put.
		if err := v.putSums(ctx, h, sums); err != nil {
			v.log.Warn("cannot store a block's chunk checksums; it will be verified by its MD5", "hash", h.String(), "err", err)
		}
	}
	return v.writeMarker(ctx, op, h)
}

// putOpts are the options of every object upload. The payload is sent
// unsigned (x-amz-content-sha256: UNSIGNED-PAYLOAD, as minio-go always does
// over TLS) instead of with per-chunk SigV4 signatures over plain HTTP: the
// signed Content-MD5 header already binds the body, and it saves a SHA-256
// pass over every byte (see the package doc). signPayload restores the
// minio-go default for comparison in benchmarks.
func (v *Volume) putOpts() minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: !v.signPayload}
}

// putSized uploads a block of known size in one PUT. It is retried only
// while no attempt has read from the body: once the body is partly
// consumed it cannot be replayed.
func (v *Volume) putSized(ctx context.Context, op string, h blockstore.Hash, vr io.Reader, size int64) error {
	var used bool
	var bodyErr error
	err := v.call(ctx, opPut, func() bool { return !used }, func(ctx context.Context) error {
		b := &body{ctx: ctx, r: vr}
		_, err := v.core.PutObject(ctx, v.bucket, v.dataKey(h), b, size, md5Base64(h), "", v.putOpts())
		n, read, rerr := b.detach()
		v.metrics.bytesOut.Add(float64(n))
		used = used || read
		if rerr != nil {
			bodyErr = rerr
			return rerr
		}
		return err
	})
	if bodyErr != nil {
		return readErr(op, bodyErr)
	}
	return v.fail(op, err)
}

// putEmpty stores the zero-length block once r has been checked to be
// empty and h to be its hash.
func (v *Volume) putEmpty(ctx context.Context, op string, h blockstore.Hash, vr io.Reader) error {
	if _, err := io.Copy(io.Discard, blockstore.ContextReader(ctx, vr)); err != nil {
		return readErr(op, err)
	}
	err := v.call(ctx, opPut, nil, func(ctx context.Context) error {
		_, err := v.core.PutObject(ctx, v.bucket, v.dataKey(h), bytes.NewReader(nil), 0, md5Base64(h), "", v.putOpts())
		return err
	})
	return v.fail(op, err)
}

// putUnknownSize uploads a block whose size is not known in advance
// (a chunked PUT) as a multipart upload in 5 MiB parts, each with its own
// Content-MD5; the parts only become an object when the upload is
// completed, which happens after the verifying reader has checked the whole
// body. minio-go aborts the upload on failure.
func (v *Volume) putUnknownSize(ctx context.Context, op string, h blockstore.Hash, vr io.Reader) error {
	b := &body{ctx: ctx, r: vr}
	opts := v.putOpts()
	opts.PartSize = unknownSizePart
	opts.SendContentMd5 = true
	err := v.call(ctx, opUpload, func() bool { return !b.wasRead() }, func(ctx context.Context) error {
		_, err := v.core.Client.PutObject(ctx, v.bucket, v.dataKey(h), b, -1, opts)
		return err
	})
	n, _, rerr := b.detach()
	v.metrics.bytesOut.Add(float64(n))
	if rerr != nil {
		return readErr(op, rerr)
	}
	return v.fail(op, err)
}

// writeMarker (re)writes the recent/ marker of h, whose LastModified is the
// block's mtime from now on.
func (v *Volume) writeMarker(ctx context.Context, op string, h blockstore.Hash) error {
	err := v.call(ctx, opPutMarker, nil, func(ctx context.Context) error {
		_, err := v.core.PutObject(ctx, v.bucket, v.markerKey(h), bytes.NewReader(nil), 0, emptyMD5, "", v.putOpts())
		return err
	})
	return v.fail(op, err)
}

// readErr wraps an error from the verifying reader: its kind says what was
// wrong with the body (or that ctx ended); anything else is r failing.
func readErr(op string, err error) error {
	if blockstore.KindOf(err) == blockstore.KindInternal {
		return blockstore.E(op, "reading the block data failed", err)
	}
	return blockstore.E(op, err)
}

// errDetached is what a late read of an upload's body gets.
var errDetached = errors.New("s3volume: upload finished")

// body is the request body of one upload attempt. It records how much of
// the verifying reader was consumed and its first error, and it can be
// detached: net/http may go on reading a request body in its own goroutine
// after the request has returned, and the caller's reader must not be
// touched once Put has returned. detach waits for a Read in progress, so
// Put returns only after the caller's reader is quiet.
type body struct {
	mu     sync.Mutex
	ctx    context.Context
	r      io.Reader
	n      int64
	read   bool
	err    error
	closed bool
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, errDetached
	}
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	b.read = true
	n, err := b.r.Read(p)
	b.n += int64(n)
	if err != nil && err != io.EOF && b.err == nil {
		b.err = err
	}
	return n, err
}

func (b *body) wasRead() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.read
}

// detach ends the body's use and reports the bytes handed out, whether
// the underlying reader was read at all, and its first error.
func (b *body) detach() (n int64, read bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.n, b.read, b.err
}
