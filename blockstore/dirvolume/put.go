package dirvolume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"slices"
	"strconv"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// Put implements blockstore.Volume. It streams r through a verifying reader
// into a temp file and renames that into place only once the whole body has
// been read and matched h and size; see the package doc.
func (v *Volume) Put(ctx context.Context, h blockstore.Hash, r io.Reader, size int64) error {
	const op = "dirvolume.Put"
	if size > blockstore.MaxBlockSize {
		return blockstore.E(op, blockstore.KindTooLarge)
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}
	if err := v.checkFree(op, size); err != nil {
		return err
	}
	hash := h.String()
	dir := subdir(hash)
	if err := v.mkdir(op, dir); err != nil {
		return err
	}
	tmp, f, err := v.createTemp(op, dir, hash)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if committed {
			return
		}
		if f != nil {
			f.Close()
		}
		if err := v.root.Remove(tmp); err != nil && !isNotExist(err) {
			v.log.Warn("cannot remove temp file of a failed write", "file", tmp, "err", err)
		}
	}()

	name, sums, err := v.writeBlock(ctx, f, h, r, size)
	if err != nil {
		return err
	}
	now := time.Now()
	if err := v.root.Chtimes(tmp, now, now); err != nil {
		return v.ioErr(op, "cannot set the block file's mtime", err)
	}
	// The checksum file is written before the block file is synced: the
	// journal commit of that sync then usually carries it too, and its own
	// sync has little left to do.
	sumsTmp, sf, err := v.writeSumsTemp(op, h, sums)
	if err != nil {
		return err
	}
	defer v.root.Remove(sumsTmp) // a no-op once renamed
	if err := f.Sync(); err != nil {
		sf.Close()
		return v.ioErr(op, "cannot sync the block file to disk", err)
	}
	err = sf.Sync()
	if cerr := sf.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return v.ioErr(op, "cannot sync the block's checksum file to disk", err)
	}
	err, f = f.Close(), nil
	if err != nil {
		return v.ioErr(op, "cannot close the block file", err)
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}

	// The sidecar goes into place first: a crash between the two renames
	// leaves checksums without a new block (harmless: they are a function
	// of the block's name, so they are right for any sound copy of it),
	// never a new block without checksums.
	mu := v.lock(h)
	mu.Lock()
	err = v.root.Rename(sumsTmp, sumsName(hash))
	if err == nil {
		if v.afterSums != nil {
			v.afterSums()
		}
		err = v.root.Rename(tmp, join(dir, name))
	}
	if err == nil {
		committed = true
		v.dropOtherForms(hash, name)
	}
	mu.Unlock()
	if err != nil {
		return v.ioErr(op, "cannot move the block file into place", err)
	}
	if err := v.syncDir(dir); err != nil {
		return v.ioErr(op, "the block was written but its directory could not be synced to disk", err)
	}
	return nil
}

// writeSumsTemp writes the encoded checksums of h into a temp file in h's
// subdirectory and returns its name and the open file, not yet synced.
func (v *Volume) writeSumsTemp(op string, h blockstore.Hash, sums *blockstore.Checksums) (string, tempFile, error) {
	hash := h.String()
	name, f, err := v.createTemp(op, subdir(hash), hash)
	if err != nil {
		return "", nil, err
	}
	if _, err := f.Write(sums.Marshal(h)); err != nil {
		f.Close()
		v.root.Remove(name)
		return "", nil, v.ioErr(op, "cannot write the block's checksum file", err)
	}
	return name, f, nil
}

// writeBlock copies the verified body of h into w, raw or compressed, and
// returns the file name the block must get and its chunk checksums.
func (v *Volume) writeBlock(ctx context.Context, w io.Writer, h blockstore.Hash, r io.Reader, size int64) (string, *blockstore.Checksums, error) {
	pr := blockstore.NewPutReader(r, h, size)
	name, err := v.writeVerified(ctx, w, h, pr, size)
	if err != nil {
		return "", nil, err
	}
	return name, pr.Checksums(), nil
}

// writeVerified copies pr into w, raw or compressed, and returns the file
// name the block must get.
func (v *Volume) writeVerified(ctx context.Context, w io.Writer, h blockstore.Hash, pr *blockstore.PutReader, size int64) (string, error) {
	const op = "dirvolume.Put"
	src := blockstore.ContextReader(ctx, pr)
	bp := getBuf()
	defer putBuf(bp)
	buf := *bp
	n, eof, err := fill(src, buf)
	if err != nil {
		return "", readErr(op, err)
	}

	var sample []byte // the first chunk compressed, when that was worth it
	if v.compress && n >= minCompressSize {
		enc, err := estimator()
		if err != nil {
			return "", blockstore.E(op, "cannot set up compression", err)
		}
		sp := getBuf()
		defer putBuf(sp)
		if c := enc.EncodeAll(buf[:n], (*sp)[:0]); worthCompressing(n, len(c)) {
			sample = c
		}
	}

	hash := h.String()
	switch {
	case sample == nil:
		for {
			if _, err := w.Write(buf[:n]); err != nil {
				return "", v.ioErr(op, "cannot write the block file", err)
			}
			if eof {
				return hash, nil
			}
			if n, eof, err = fill(src, buf); err != nil {
				return "", readErr(op, err)
			}
		}
	case eof:
		// The whole block was in the first chunk: the sample is the file.
		if _, err := w.Write(sample); err != nil {
			return "", v.ioErr(op, "cannot write the block file", err)
		}
		return fileName{hash: hash, zst: true, size: int64(n)}.String(), nil
	}

	enc, err := getEncoder()
	if err != nil {
		return "", blockstore.E(op, "cannot set up compression", err)
	}
	defer putEncoder(enc)
	enc.ResetContentSize(w, size) // size < 0: no content size in the header
	var total int64
	for {
		if _, err := enc.Write(buf[:n]); err != nil {
			return "", v.ioErr(op, "cannot write the block file", err)
		}
		total += int64(n)
		if eof {
			break
		}
		if n, eof, err = fill(src, buf); err != nil {
			return "", readErr(op, err)
		}
	}
	if err := enc.Close(); err != nil {
		return "", v.ioErr(op, "cannot write the block file", err)
	}
	return fileName{hash: hash, zst: true, size: total}.String(), nil
}

// fill reads from r until buf is full or r ends. eof is true when r returned
// io.EOF (for a verifying reader: the body was complete and correct).
func fill(r io.Reader, buf []byte) (n int, eof bool, err error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// readErr wraps an error from the verifying reader: its kind says what was
// wrong with the body (or that ctx ended); anything else is r failing.
func readErr(op string, err error) error {
	if blockstore.KindOf(err) == blockstore.KindInternal {
		return blockstore.E(op, "reading the block data failed", err)
	}
	return blockstore.E(op, err)
}

// checkFree fails with KindFull when writing size bytes would leave less
// than the reserve free (size < 0: unknown, counted as MaxBlockSize).
func (v *Volume) checkFree(op string, size int64) error {
	if v.reserve < 0 {
		return nil
	}
	free, err := v.freeBytes()
	if err != nil {
		return v.ioErr(op, "cannot measure the volume's free space", err)
	}
	if size < 0 {
		size = blockstore.MaxBlockSize
	}
	if free-size < v.reserve {
		return blockstore.E(op, blockstore.KindFull, fmt.Sprintf(
			"volume %s is full: %d bytes free, reserve %d: free some space, lower the volume's Reserve or add a volume",
			v.rootPath, free, v.reserve))
	}
	return nil
}

// mkdir creates the hex subdirectory dir if needed, and syncs the root when
// it did so that the new directory survives a crash.
func (v *Volume) mkdir(op, dir string) error {
	err := v.root.Mkdir(dir, 0o755)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return v.ioErr(op, "cannot create the block's subdirectory: check the volume directory's permissions", err)
	}
	if err := v.rootDir.Sync(); err != nil {
		return v.ioErr(op, "cannot sync the volume directory to disk", err)
	}
	return nil
}

// createTemp creates dir/.tmp-<hash>-<random>, exclusively.
func (v *Volume) createTemp(op, dir, hash string) (string, tempFile, error) {
	for attempt := 0; ; attempt++ {
		name := join(dir, tmpPrefix+hash+"-"+strconv.FormatUint(rand.Uint64(), 36))
		f, err := v.openTemp(name)
		if errors.Is(err, fs.ErrExist) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", nil, v.ioErr(op, "cannot create a temp file in the volume: check the directory's permissions", err)
		}
		return name, f, nil
	}
}

// syncDir fsyncs the subdirectory dir, making renames in it durable.
func (v *Volume) syncDir(dir string) error {
	f, err := v.root.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// dropOtherForms removes the live files of hash other than keep: after a Put
// or Untrash wrote one form (raw or compressed), an older copy in the other
// form must not shadow it. The caller holds the hash's lock.
func (v *Volume) dropOtherForms(hash string, keep ...string) {
	if !v.zstSeen.Load() {
		return // only the raw name can exist, and it is keep
	}
	names, err := v.namesOf(hash)
	if err != nil {
		v.log.Error("cannot list older copies of a block to remove them", "block", hash, "err", err)
		return
	}
	for _, n := range names {
		if n.trash || slices.Contains(keep, n.String()) {
			continue
		}
		p := join(subdir(hash), n.String())
		if err := v.root.Remove(p); err != nil && !isNotExist(err) {
			v.log.Error("cannot remove an older copy of a block", "file", p, "err", err)
		}
	}
}
