package s3volume

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"

	"github.com/keepgate/keepgate/blockstore"
)

// Touch implements blockstore.Volume: it rewrites the block's recent/
// marker, after checking that the data object exists.
func (v *Volume) Touch(ctx context.Context, h blockstore.Hash) error {
	const op = "s3volume.Touch"
	mu := v.lock(h)
	mu.RLock()
	defer mu.RUnlock()
	if _, err := v.head(ctx, v.dataKey(h)); err != nil {
		return v.fail(op, err)
	}
	return v.writeMarker(ctx, op, h)
}

// Trash implements blockstore.Volume. A block whose mtime is less than
// Policy.MinAge ago is left alone (nil is returned). With a zero
// Policy.Lifetime the data object and its marker are deleted. Otherwise the
// data object is copied to trash/ on the server and then deleted; the
// marker stays, for EmptyTrash's checks. See the package doc.
func (v *Volume) Trash(ctx context.Context, h blockstore.Hash) error {
	const op = "s3volume.Trash"
	mu := v.lock(h)
	mu.Lock()
	defer mu.Unlock()
	info, err := v.Stat(ctx, h)
	if err != nil {
		return blockstore.E(op, err)
	}
	now := v.now()
	if now.Sub(info.Mtime) < v.policy.MinAge {
		return nil
	}
	if v.policy.Lifetime <= 0 {
		if err := v.remove(ctx, v.dataKey(h)); err != nil {
			return v.fail(op, err)
		}
		if err := v.remove(ctx, v.markerKey(h)); err != nil {
			v.log.Warn("cannot delete the mtime marker of a deleted block", "hash", h.String(), "err", err)
		}
		if err := v.remove(ctx, v.sumsKey(h)); err != nil {
			v.log.Warn("cannot delete the chunk checksums of a deleted block", "hash", h.String(), "err", err)
		}
		return nil
	}
	// Overwriting a trash copy that an EmptyTrash elsewhere may be deleting
	// right now could lose the block: refuse while that is possible.
	ti, err := v.head(ctx, v.trashKey(h))
	switch {
	case err == nil && ti.LastModified.Add(v.policy.Lifetime).Before(now.Add(v.race)):
		return blockstore.E(op, blockstore.KindUnavailable, fmt.Sprintf(
			"block %s already has a trash copy in %s that may be deleted within the race window (%v): retry after the next EmptyTrash",
			h, v.id, v.race))
	case err != nil && !isNotFound(err):
		return v.fail(op, err)
	}
	copied, err := v.copy(ctx, v.dataKey(h), v.trashKey(h))
	if err != nil {
		return v.fail(op, err)
	}
	// EmptyTrash dates the trash by the copy's LastModified: a server that
	// keeps the source's timestamp would make it look expired already.
	if copied.LastModified.Before(now.Add(-maxClockSkew)) {
		return blockstore.E(op, blockstore.KindInternal, fmt.Sprintf(
			"S3 server of %s gave the trash copy of %s the timestamp %v, not the current time: this server cannot be used with a trash lifetime; set it to 0",
			v.id, h, copied.LastModified))
	}
	if err := v.remove(ctx, v.dataKey(h)); err != nil {
		return v.fail(op, err)
	}
	return nil
}

// Untrash implements blockstore.Volume: it copies trash/K back to K,
// rewrites the marker (the block comes back with mtime now) and deletes
// the trash copy. KindNotFound when there is no trash copy.
func (v *Volume) Untrash(ctx context.Context, h blockstore.Hash) error {
	const op = "s3volume.Untrash"
	mu := v.lock(h)
	mu.Lock()
	defer mu.Unlock()
	if _, err := v.copy(ctx, v.trashKey(h), v.dataKey(h)); err != nil {
		return v.fail(op, err)
	}
	if err := v.writeMarker(ctx, op, h); err != nil {
		return err
	}
	if err := v.remove(ctx, v.trashKey(h)); err != nil {
		return v.fail(op, err)
	}
	return nil
}

// EmptyTrash implements blockstore.Volume. For every trash copy (listed
// page by page, handled by a few workers):
//   - if the block's marker says it was written or touched less than
//     Policy.MinAge before it was trashed, or after, the trash raced with a
//     write: if the data object exists, the trash copy is deleted (the
//     block was re-written meanwhile); else the block is restored from it;
//   - else, once the copy is older than Policy.Lifetime, it is deleted, and
//     so is the marker when no data object exists.
//
// It goes on past failures and returns the first.
func (v *Volume) EmptyTrash(ctx context.Context) error {
	const op = "s3volume.EmptyTrash"
	var deleted, restored, kept atomic.Int64
	var errOnce sync.Once
	var firstErr error
	var g errgroup.Group
	g.SetLimit(emptyTrashWorkers)
	lerr := v.list(ctx, v.prefix+trashDir, func(o minio.ObjectInfo) error {
		h, ok := v.hashOf(o.Key, v.prefix+trashDir)
		if !ok {
			return nil
		}
		g.Go(func() error {
			res, err := v.emptyTrashItem(ctx, h, mtimeOf(o.LastModified))
			switch {
			case err != nil:
				v.log.Warn("cannot empty a trash item", "hash", h.String(), "err", err)
				errOnce.Do(func() { firstErr = err })
			case res == deletedTrash:
				deleted.Add(1)
			case res == restoredTrash:
				restored.Add(1)
			default:
				kept.Add(1)
			}
			return nil
		})
		return nil
	})
	g.Wait()
	if lerr != nil {
		return v.fail(op, lerr)
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}
	if deleted.Load() > 0 || restored.Load() > 0 {
		v.log.Info("emptied trash", "deleted", deleted.Load(), "restored", restored.Load(), "kept", kept.Load())
	}
	if firstErr != nil {
		return blockstore.E(op, firstErr)
	}
	return nil
}

type trashResult int

const (
	keptTrash trashResult = iota
	deletedTrash
	restoredTrash
)

// emptyTrashItem handles the trash copy of h made at trashed.
func (v *Volume) emptyTrashItem(ctx context.Context, h blockstore.Hash, trashed time.Time) (trashResult, error) {
	const op = "s3volume.EmptyTrash"
	mu := v.lock(h)
	mu.Lock()
	defer mu.Unlock()
	mi, err := v.head(ctx, v.markerKey(h))
	if err != nil && !isNotFound(err) {
		return keptTrash, v.fail(op, err)
	}
	hasMarker := err == nil
	raced := hasMarker && trashed.Sub(mtimeOf(mi.LastModified)) < v.policy.MinAge
	expired := !v.now().Before(trashed.Add(v.policy.Lifetime))
	if !raced && !expired {
		return keptTrash, nil
	}
	_, err = v.head(ctx, v.dataKey(h))
	live := err == nil
	if err != nil && !isNotFound(err) {
		return keptTrash, v.fail(op, err)
	}
	if raced && !live {
		if _, err := v.copy(ctx, v.trashKey(h), v.dataKey(h)); err != nil {
			return keptTrash, v.fail(op, err)
		}
		v.log.Warn("restored a block that was trashed while it was being written or touched", "hash", h.String())
		if err := v.remove(ctx, v.trashKey(h)); err != nil {
			return restoredTrash, v.fail(op, err)
		}
		return restoredTrash, nil
	}
	if err := v.remove(ctx, v.trashKey(h)); err != nil {
		return keptTrash, v.fail(op, err)
	}
	if !live && hasMarker {
		if err := v.remove(ctx, v.markerKey(h)); err != nil {
			return deletedTrash, v.fail(op, err)
		}
	}
	if !live {
		if err := v.remove(ctx, v.sumsKey(h)); err != nil {
			return deletedTrash, v.fail(op, err)
		}
	}
	return deletedTrash, nil
}

// copy copies src to dst on the server and returns the new object's info.
func (v *Volume) copy(ctx context.Context, src, dst string) (minio.ObjectInfo, error) {
	var oi minio.ObjectInfo
	err := v.call(ctx, opCopy, nil, func(ctx context.Context) (err error) {
		oi, err = v.core.CopyObject(ctx, v.bucket, src, v.bucket, dst, nil, minio.CopySrcOptions{}, minio.PutObjectOptions{})
		return err
	})
	return oi, err
}

// remove deletes key; a missing key is not an error.
func (v *Volume) remove(ctx context.Context, key string) error {
	return v.call(ctx, opDelete, nil, func(ctx context.Context) error {
		err := v.core.RemoveObject(ctx, v.bucket, key, minio.RemoveObjectOptions{})
		if isNotFound(err) {
			return nil
		}
		return err
	})
}
