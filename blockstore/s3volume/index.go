package s3volume

import (
	"context"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
)

// Index implements blockstore.Volume. It lists the data objects whose hash
// starts with prefix (0–32 lowercase hex digits, else KindBadRequest) in
// hash order, one page of keys per request, and merge-joins that listing
// with the listing of the recent/ markers to give each block its mtime
// (the data object's LastModified when it has no marker), in whole
// seconds. Keys that are not 32 hex digits below the volume's prefix are
// skipped; the data listing stops at the first key past "f", so the
// recent/ and trash/ objects are never paged through.
func (v *Volume) Index(ctx context.Context, prefix string, fn func(blockstore.BlockInfo) error) error {
	const op = "s3volume.Index"
	if err := blockstore.CheckIndexPrefix(op, prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}
	data := &pager{v: v, prefix: v.prefix + prefix}
	markers := &pager{v: v, prefix: v.prefix + recentDir + prefix}
	markerDir := v.prefix + recentDir
	var marker minio.ObjectInfo
	markerHash := "" // hash of marker; "" before the first and after the last
	for {
		o, ok, err := data.next(ctx)
		if err != nil {
			return v.fail(op, err)
		}
		if !ok {
			return nil
		}
		rest := o.Key[len(v.prefix):]
		if rest != "" && rest[0] > 'f' {
			return nil // past every hex key: recent/, trash/ and others follow
		}
		h, ok := v.hashOf(o.Key, v.prefix)
		if !ok {
			continue
		}
		if o.Size > blockstore.MaxBlockSize {
			v.log.Warn("skipping an object that cannot be a block: move it out of the volume", "key", o.Key, "size", o.Size)
			continue
		}
		hash := h.String()
		for markerHash < hash && !markers.done() {
			m, ok, err := markers.next(ctx)
			if err != nil {
				return v.fail(op, err)
			}
			if !ok {
				markerHash = ""
				break
			}
			if mh, ok := v.hashOf(m.Key, markerDir); ok {
				marker, markerHash = m, mh.String()
			}
		}
		mtime := o.LastModified
		if markerHash == hash {
			mtime = marker.LastModified
		}
		if err := fn(blockstore.BlockInfo{Hash: h, Size: o.Size, Mtime: mtimeOf(mtime)}); err != nil {
			return err
		}
	}
}

// hashOf parses key as dir followed by a block hash.
func (v *Volume) hashOf(key, dir string) (blockstore.Hash, bool) {
	if len(key) != len(dir)+32 || key[:len(dir)] != dir {
		return blockstore.Hash{}, false
	}
	h, err := blockstore.ParseHash(key[len(dir):])
	return h, err == nil
}

// list calls fn for every object whose key starts with prefix, in key
// order, page by page.
func (v *Volume) list(ctx context.Context, prefix string, fn func(minio.ObjectInfo) error) error {
	p := &pager{v: v, prefix: prefix}
	for {
		o, ok, err := p.next(ctx)
		if err != nil || !ok {
			return err
		}
		if err := fn(o); err != nil {
			return err
		}
	}
}

// pager walks the listing of a key prefix, one page per S3 request.
type pager struct {
	v      *Volume
	prefix string
	after  string // last key received
	page   []minio.ObjectInfo
	last   bool // the page in hand is the last one
	ended  bool // every key has been returned
}

// next returns the next object, or ok false at the end.
func (p *pager) next(ctx context.Context) (o minio.ObjectInfo, ok bool, err error) {
	for len(p.page) == 0 {
		if p.last {
			p.ended = true
			return o, false, nil
		}
		if p.page, p.last, err = p.v.listPage(ctx, p.prefix, p.after); err != nil {
			return o, false, err
		}
		if n := len(p.page); n > 0 {
			p.after = p.page[n-1].Key
		}
	}
	o, p.page = p.page[0], p.page[1:]
	return o, true, nil
}

// done reports whether next has returned the end.
func (p *pager) done() bool { return p.ended }

// listPage lists up to v.pageSize keys starting with prefix that sort
// after the key after, with one ListObjectsV2 request (retried as a
// whole). last is true when fewer keys than asked for came back.
func (v *Volume) listPage(ctx context.Context, prefix, after string) (page []minio.ObjectInfo, last bool, err error) {
	fetchOwner := false
	opts := minio.ListObjectsOptions{Prefix: prefix, StartAfter: after, MaxKeys: v.pageSize, Recursive: true, FetchOwner: &fetchOwner}
	err = v.call(ctx, opList, nil, func(ctx context.Context) error {
		page = page[:0]
		for o := range v.core.ListObjectsIter(ctx, v.bucket, opts) {
			if o.Err != nil {
				return o.Err
			}
			page = append(page, o)
			if len(page) == v.pageSize {
				break // the iterator would fetch the next page
			}
		}
		return ctx.Err() // the iterator ends silently when ctx is done
	})
	return page, len(page) < v.pageSize, err
}
