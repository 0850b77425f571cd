package dirvolume

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/klauspost/compress/zstd"
)

// located is a block file found by find.
type located struct {
	name fileName
	path string // inside the root
	info fs.FileInfo
}

// size is the block's uncompressed size.
func (l located) size() int64 {
	if l.name.zst {
		return l.name.size
	}
	return l.info.Size()
}

// find looks up the live file of h: the raw file if there is one (one stat),
// else a compressed one (a readdir of the subdirectory, only when compressed
// files may exist). Only regular files count.
func (v *Volume) find(op string, h blockstore.Hash) (located, error) {
	hash := h.String()
	raw := join(subdir(hash), hash)
	fi, err := v.root.Lstat(raw)
	switch {
	case err == nil && fi.Mode().IsRegular():
		return located{name: fileName{hash: hash, size: -1}, path: raw, info: fi}, nil
	case err == nil:
		// A symlink, directory or device under a block's name is a damaged
		// copy, never followed and never "not found".
		return located{}, blockstore.E(op, blockstore.KindCorrupt, fmt.Sprintf("checksum mismatch in stored data: %s is not a regular file (%s)", v.abs(raw), fi.Mode().Type()))
	case err != nil && !isNotExist(err):
		return located{}, blockstore.E(op, "cannot look up the block file", err)
	case !v.zstSeen.Load():
		return located{}, notFound(op)
	}
	names, err := v.namesOf(hash)
	if err != nil {
		return located{}, blockstore.E(op, "cannot list the block's subdirectory", err)
	}
	for _, n := range names {
		if n.trash || !n.zst {
			continue
		}
		p := join(subdir(hash), n.String())
		fi, err := v.root.Lstat(p)
		if err == nil && fi.Mode().IsRegular() {
			return located{name: n, path: p, info: fi}, nil
		}
		if err != nil && !isNotExist(err) {
			return located{}, blockstore.E(op, "cannot look up the block file", err)
		}
	}
	return located{}, notFound(op)
}

// checkSize rejects a file that cannot be a block.
func (v *Volume) checkSize(op string, l located) error {
	if l.info.Size() > blockstore.MaxBlockSize || l.size() > blockstore.MaxBlockSize {
		return blockstore.E(op, blockstore.KindTooLarge, fmt.Sprintf(
			"block file %s is larger than %d bytes, so it is not a valid block: move it out of the volume",
			v.abs(l.path), blockstore.MaxBlockSize))
	}
	return nil
}

// abs is the absolute path of a file inside the root, for messages to the
// operator.
func (v *Volume) abs(p string) string { return filepath.Join(v.rootPath, p) }

// Stat implements blockstore.Volume.
func (v *Volume) Stat(ctx context.Context, h blockstore.Hash) (blockstore.BlockInfo, error) {
	const op = "dirvolume.Stat"
	if err := ctx.Err(); err != nil {
		return blockstore.BlockInfo{}, blockstore.E(op, err)
	}
	l, err := v.find(op, h)
	if err != nil {
		return blockstore.BlockInfo{}, err
	}
	if err := v.checkSize(op, l); err != nil {
		return blockstore.BlockInfo{}, err
	}
	return blockstore.BlockInfo{Hash: h, Size: l.size(), Mtime: l.info.ModTime()}, nil
}

// Get implements blockstore.Volume. The reader returns the stored bytes
// unverified (see the package doc); it fails with KindCorrupt if the file is
// shorter than its stated size or, for compressed files, does not decode
// cleanly, and with ctx's error once ctx is done.
func (v *Volume) Get(ctx context.Context, h blockstore.Hash, off, n int64) (io.ReadCloser, blockstore.BlockInfo, error) {
	const op = "dirvolume.Get"
	if err := ctx.Err(); err != nil {
		return nil, blockstore.BlockInfo{}, blockstore.E(op, err)
	}
	// A concurrent Put may replace the file found by one form with the
	// other between find and open: look again once.
	for attempt := 0; ; attempt++ {
		l, err := v.find(op, h)
		if err != nil {
			return nil, blockstore.BlockInfo{}, err
		}
		f, err := v.root.Open(l.path)
		if isNotExist(err) && attempt == 0 {
			continue
		}
		if isNotExist(err) {
			return nil, blockstore.BlockInfo{}, notFound(op)
		}
		if err != nil {
			return nil, blockstore.BlockInfo{}, blockstore.E(op, "cannot open the block file", err)
		}
		br := &blockReader{ctx: ctx, f: f, path: v.abs(l.path)}
		info, err := v.open(br, l, h, off, n)
		if err != nil {
			br.Close()
			return nil, info, err
		}
		return br, info, nil
	}
}

// open prepares br, whose file is open, to read [off, off+n) of the block.
func (v *Volume) open(br *blockReader, l located, h blockstore.Hash, off, n int64) (blockstore.BlockInfo, error) {
	const op = "dirvolume.Get"
	fi, err := br.f.Stat() // the file actually opened, which may be newer than l
	if err != nil {
		return blockstore.BlockInfo{}, blockstore.E(op, "cannot stat the block file", err)
	}
	l.info = fi
	if err := v.checkSize(op, l); err != nil {
		return blockstore.BlockInfo{}, err
	}
	info := blockstore.BlockInfo{Hash: h, Size: l.size(), Mtime: fi.ModTime()}
	if br.remain, err = blockstore.CheckRange(off, n, info.Size); err != nil {
		return info, blockstore.E(op, err)
	}
	info.Checksums = v.readSums(h, info.Size)
	if !l.name.zst {
		if _, err := br.f.Seek(off, io.SeekStart); err != nil {
			return info, blockstore.E(op, "cannot seek in the block file", err)
		}
		br.src = br.f
		return info, nil
	}
	if br.dec, err = getDecoder(br.f); err != nil {
		return info, blockstore.E(op, "cannot set up decompression", err)
	}
	buf := bufio.NewReaderSize(br.dec, 32<<10)
	br.src = buf
	br.toEnd = off+br.remain == info.Size
	// Skip to off, and decode the first bytes now so that a damaged file
	// fails here rather than after the caller has started answering.
	for skip := off; skip > 0; {
		if err := br.ctx.Err(); err != nil {
			return info, blockstore.E(op, err)
		}
		d, err := buf.Discard(int(min(skip, 1<<20)))
		skip -= int64(d)
		if err != nil {
			return info, br.decodeErr(err, skip+br.remain)
		}
	}
	if br.remain > 0 {
		if _, err := buf.Peek(1); err != nil {
			return info, br.decodeErr(err, br.remain)
		}
	}
	return info, nil
}

// blockReader reads remain bytes of a block file from src (the file itself,
// or a zstd decoder over it).
type blockReader struct {
	ctx    context.Context
	f      *os.File
	dec    *zstd.Decoder // nil for raw files
	src    io.Reader
	remain int64
	toEnd  bool   // compressed and reading to the end: check the frame ends there
	path   string // absolute, for messages
	err    error  // sticky
}

func (r *blockReader) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.remain <= 0 {
		return 0, io.EOF
	}
	if err := r.ctx.Err(); err != nil {
		r.err = blockstore.E("dirvolume.Get", err)
		return 0, r.err
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.src.Read(p)
	r.remain -= int64(n)
	if r.remain == 0 && r.toEnd {
		if cerr := r.checkEnd(); cerr != nil {
			r.err = cerr
			return 0, cerr // withhold the last chunk of a bad file
		}
	}
	switch {
	case r.remain == 0:
		return n, nil
	case err == io.EOF:
		r.err = r.decodeErr(err, r.remain)
		return n, r.err
	case err != nil:
		r.err = r.decodeErr(err, r.remain)
		return n, r.err
	}
	return n, nil
}

// checkEnd verifies that a compressed file decodes to nothing more, which
// also makes the decoder check the frame's checksum.
func (r *blockReader) checkEnd() error {
	var one [1]byte
	n, err := io.ReadFull(r.src, one[:])
	if n > 0 {
		return blockstore.E("dirvolume.Get", blockstore.KindCorrupt, fmt.Sprintf(
			"compressed block file %s decodes to more bytes than its name says: the file is damaged; move it out of the volume", r.path))
	}
	if err != io.EOF {
		return r.decodeErr(err, 0)
	}
	return nil
}

// decodeErr classifies a failure to read the file while missing bytes
// were still expected: a read error is internal; a compressed file that does
// not decode, or a raw file that ends early, is corrupt.
func (r *blockReader) decodeErr(err error, missing int64) error {
	const op = "dirvolume.Get"
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe):
		return blockstore.E(op, "cannot read the block file", err)
	case r.dec != nil:
		return blockstore.E(op, blockstore.KindCorrupt, fmt.Sprintf(
			"compressed block file %s is damaged: move it out of the volume", r.path), err)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return blockstore.E(op, blockstore.KindCorrupt, fmt.Sprintf(
			"block file %s ends %d bytes early: the file is damaged; move it out of the volume", r.path, missing), io.ErrUnexpectedEOF)
	}
	return blockstore.E(op, "cannot read the block file", err)
}

// Close releases the file and the decoder. It is safe to call twice.
func (r *blockReader) Close() error {
	if r.f == nil {
		return nil
	}
	if r.dec != nil {
		putDecoder(r.dec)
		r.dec = nil
	}
	err := r.f.Close()
	r.f = nil
	if r.err == nil {
		r.err = errors.New("dirvolume: read after Close")
	}
	return err
}
