package s3volume

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/base64"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
)

// Chunk checksums live in a companion object, sums/<hash> below the
// prefix (see the package doc): S3 metadata is sent before the body, and
// the checksums are known only once the body has been read. The object's
// content is a function of the block's name, so it can never be stale; a
// damaged or foreign one is refused by its own CRC and the hash it
// carries, and the block is then verified by its MD5.

// maxSumsObject bounds what is read of a companion object.
const maxSumsObject = 4096

// putSums uploads the checksums of h.
func (v *Volume) putSums(ctx context.Context, h blockstore.Hash, sums *blockstore.Checksums) error {
	b := sums.Marshal(h)
	sum := md5.Sum(b)
	return v.call(ctx, opPutSums, nil, func(ctx context.Context) error {
		_, err := v.core.PutObject(ctx, v.bucket, v.sumsKey(h), bytes.NewReader(b), int64(len(b)),
			base64.StdEncoding.EncodeToString(sum[:]), "", v.putOpts())
		return err
	})
}

// getSums returns the usable checksums of h (size bytes), or nil when it
// has none or they are damaged (logged).
func (v *Volume) getSums(ctx context.Context, h blockstore.Hash, size int64) *blockstore.Checksums {
	var b []byte
	err := v.call(ctx, opGetSums, nil, func(ctx context.Context) error {
		rc, _, _, err := v.core.GetObject(ctx, v.bucket, v.sumsKey(h), minio.GetObjectOptions{})
		if err != nil {
			return err
		}
		defer rc.Close()
		b, err = io.ReadAll(io.LimitReader(rc, maxSumsObject))
		return err
	})
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		v.log.Warn("cannot read a block's chunk checksums; verifying it by its MD5", "hash", h.String(), "err", err)
		return nil
	}
	sums, err := blockstore.ParseChecksums(b, h, size)
	if err != nil {
		v.log.Warn("damaged chunk checksums; verifying the block by its MD5 and rewriting them", "key", v.sumsKey(h), "err", err)
		return nil
	}
	return sums
}

// SetChecksums implements blockstore.Volume.
func (v *Volume) SetChecksums(ctx context.Context, h blockstore.Hash, sums *blockstore.Checksums) error {
	const op = "s3volume.SetChecksums"
	mu := v.lock(h)
	mu.RLock()
	defer mu.RUnlock()
	if _, err := v.head(ctx, v.dataKey(h)); err != nil {
		return v.fail(op, err)
	}
	return v.fail(op, v.putSums(ctx, h, sums))
}
