// Package memvolume is an in-memory blockstore.Volume for tests and for
// wrappers' conformance runs. It holds whole blocks in RAM: not for
// production data.
package memvolume

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

type entry struct {
	data    []byte
	sums    *blockstore.Checksums // nil: none (DropChecksums)
	mtime   time.Time
	trashed time.Time // zero when live
}

// Volume is an in-memory volume. The zero value is not usable; call New.
type Volume struct {
	policy blockstore.TrashPolicy
	mu     sync.Mutex
	blocks map[blockstore.Hash]*entry
	trash  map[blockstore.Hash]*entry
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// New returns an empty volume with the given trash policy.
func New(p blockstore.TrashPolicy) *Volume {
	return &Volume{policy: p, blocks: map[blockstore.Hash]*entry{}, trash: map[blockstore.Hash]*entry{}, Now: time.Now}
}

func notFound(op string) error {
	return &blockstore.Error{Op: "memvolume." + op, Kind: blockstore.KindNotFound}
}

// Put implements blockstore.Volume.
func (v *Volume) Put(ctx context.Context, h blockstore.Hash, r io.Reader, size int64) error {
	if size > blockstore.MaxBlockSize {
		return blockstore.E("memvolume.Put", blockstore.KindTooLarge)
	}
	var buf bytes.Buffer
	if size > 0 {
		buf.Grow(int(size))
	}
	pr := blockstore.NewPutReader(r, h, size)
	if _, err := io.Copy(&buf, blockstore.ContextReader(ctx, pr)); err != nil {
		return blockstore.E("memvolume.Put", err)
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E("memvolume.Put", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.blocks[h] = &entry{data: buf.Bytes(), sums: pr.Checksums(), mtime: v.Now()}
	return nil
}

// Get implements blockstore.Volume.
func (v *Volume) Get(ctx context.Context, h blockstore.Hash, off, n int64) (io.ReadCloser, blockstore.BlockInfo, error) {
	v.mu.Lock()
	e, ok := v.blocks[h]
	var cp entry
	if ok {
		cp = *e
	}
	v.mu.Unlock()
	if !ok {
		return nil, blockstore.BlockInfo{}, notFound("Get")
	}
	e = &cp
	info := blockstore.BlockInfo{Hash: h, Size: int64(len(e.data)), Mtime: e.mtime}
	if e.sums.Valid(info.Size) {
		info.Checksums = e.sums
	}
	n, err := blockstore.CheckRange(off, n, info.Size)
	if err != nil {
		return nil, info, err
	}
	return io.NopCloser(bytes.NewReader(e.data[off : off+n])), info, nil
}

// Stat implements blockstore.Volume.
func (v *Volume) Stat(ctx context.Context, h blockstore.Hash) (blockstore.BlockInfo, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.blocks[h]
	if !ok {
		return blockstore.BlockInfo{}, notFound("Stat")
	}
	return blockstore.BlockInfo{Hash: h, Size: int64(len(e.data)), Mtime: e.mtime}, nil
}

// Touch implements blockstore.Volume.
func (v *Volume) Touch(ctx context.Context, h blockstore.Hash) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.blocks[h]
	if !ok {
		return notFound("Touch")
	}
	e.mtime = v.Now()
	return nil
}

// Trash implements blockstore.Volume.
func (v *Volume) Trash(ctx context.Context, h blockstore.Hash) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.blocks[h]
	if !ok {
		return notFound("Trash")
	}
	now := v.Now()
	if now.Sub(e.mtime) < v.policy.MinAge {
		return nil
	}
	delete(v.blocks, h)
	if v.policy.Lifetime > 0 {
		e.trashed = now
		v.trash[h] = e
	}
	return nil
}

// Untrash implements blockstore.Volume.
func (v *Volume) Untrash(ctx context.Context, h blockstore.Hash) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.trash[h]
	if !ok {
		return notFound("Untrash")
	}
	delete(v.trash, h)
	e.trashed = time.Time{}
	e.mtime = v.Now()
	v.blocks[h] = e
	return nil
}

// EmptyTrash implements blockstore.Volume.
func (v *Volume) EmptyTrash(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.Now()
	for h, e := range v.trash {
		if now.Sub(e.trashed) >= v.policy.Lifetime {
			delete(v.trash, h)
		}
	}
	return nil
}

// Index implements blockstore.Volume.
func (v *Volume) Index(ctx context.Context, prefix string, fn func(blockstore.BlockInfo) error) error {
	v.mu.Lock()
	var infos []blockstore.BlockInfo
	for h, e := range v.blocks {
		if strings.HasPrefix(h.String(), prefix) {
			infos = append(infos, blockstore.BlockInfo{Hash: h, Size: int64(len(e.data)), Mtime: e.mtime})
		}
	}
	v.mu.Unlock()
	for _, i := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

// DeviceID implements blockstore.Volume.
func (v *Volume) DeviceID() string { return "mem:" }

// SetChecksums implements blockstore.Volume.
func (v *Volume) SetChecksums(ctx context.Context, h blockstore.Hash, sums *blockstore.Checksums) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	e, ok := v.blocks[h]
	if !ok {
		return notFound("SetChecksums")
	}
	e.sums = sums
	return nil
}

// DropChecksums forgets the chunk checksums of h, as if it had been
// written before checksums existed (for tests).
func (v *Volume) DropChecksums(h blockstore.Hash) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.blocks[h]; ok {
		e.sums = nil
	}
}

// Corrupt replaces the stored bytes of h (for tests of corruption handling).
func (v *Volume) Corrupt(h blockstore.Hash, data []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e, ok := v.blocks[h]; ok {
		e.data = data
	}
}
