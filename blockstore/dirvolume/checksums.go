package dirvolume

import (
	"context"
	"io"

	"github.com/keepgate/keepgate/blockstore"
)

// Chunk checksums live in a sidecar file beside each block, H.crc32c (see
// the package doc). Its content is a function of the block's name alone,
// so one sidecar serves every form of the block (raw, compressed, trash)
// and can never be stale: it is only ever wrong when damaged, which its
// own CRC and the hash it carries reveal.

// maxSumsFile bounds what is read of a sidecar.
const maxSumsFile = 4096

// readSums returns the usable checksums of block hash (size bytes), or nil
// when it has none or they are damaged (logged: the caller falls back to
// the block's MD5 and then rewrites them).
func (v *Volume) readSums(h blockstore.Hash, size int64) *blockstore.Checksums {
	f, err := v.root.Open(sumsName(h.String()))
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		v.log.Warn("cannot open a block's checksum file; verifying the block by its MD5", "block", h.String(), "err", err)
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSumsFile))
	if err != nil {
		v.log.Warn("cannot read a block's checksum file; verifying the block by its MD5", "block", h.String(), "err", err)
		return nil
	}
	sums, err := blockstore.ParseChecksums(b, h, size)
	if err != nil {
		v.log.Warn("damaged checksum file; verifying the block by its MD5 and rewriting it", "file", v.abs(sumsName(h.String())), "err", err)
		return nil
	}
	return sums
}

// SetChecksums implements blockstore.Volume: it writes the sidecar of a
// stored block (synced, then renamed into place).
func (v *Volume) SetChecksums(ctx context.Context, h blockstore.Hash, sums *blockstore.Checksums) error {
	const op = "dirvolume.SetChecksums"
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}
	if _, err := v.find(op, h); err != nil {
		return err
	}
	tmp, f, err := v.writeSumsTemp(op, h, sums)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		v.root.Remove(tmp)
		return v.ioErr(op, "cannot sync the checksum file to disk", err)
	}
	mu := v.lock(h)
	mu.Lock()
	err = v.root.Rename(tmp, sumsName(h.String()))
	mu.Unlock()
	if err != nil {
		v.root.Remove(tmp)
		return v.ioErr(op, "cannot move the checksum file into place", err)
	}
	if err := v.syncDir(subdir(h.String())); err != nil {
		return v.ioErr(op, "cannot sync the block's directory to disk", err)
	}
	return nil
}

// dropOrphanSums removes the sidecar of hash when no block or trash file
// of hash remains; it reports whether it removed one.
func (v *Volume) dropOrphanSums(hash string) bool {
	h, err := blockstore.ParseHash(hash)
	if err != nil {
		return false
	}
	mu := v.lock(h)
	mu.Lock()
	defer mu.Unlock()
	if _, err := v.root.Lstat(join(subdir(hash), hash)); !isNotExist(err) {
		return false
	}
	names, err := v.namesOf(hash)
	if err != nil || len(names) > 0 {
		return false
	}
	if err := v.root.Remove(sumsName(hash)); err != nil {
		if !isNotExist(err) {
			v.log.Warn("cannot remove the checksum file of a deleted block", "file", v.abs(sumsName(hash)), "err", err)
		}
		return false
	}
	return true
}
