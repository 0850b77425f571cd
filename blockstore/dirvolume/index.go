package dirvolume

import (
	"context"
	"io"
	"io/fs"
	"sort"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// Index implements blockstore.Volume. It lists the blocks whose hash starts
// with prefix (0–32 lowercase hex digits, else KindBadRequest) in hash
// order, walking only the hex subdirectories compatible with the prefix.
// Temp and trash files, and anything that is not a regular file, are
// skipped; a compressed block is listed with its uncompressed size.
func (v *Volume) Index(ctx context.Context, prefix string, fn func(blockstore.BlockInfo) error) error {
	const op = "dirvolume.Index"
	if err := blockstore.CheckIndexPrefix(op, prefix); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return blockstore.E(op, err)
	}
	dirs, err := v.subdirs(prefix)
	if err != nil {
		return blockstore.E(op, "cannot list the volume directory", err)
	}
	for _, dir := range dirs {
		if err := v.indexDir(ctx, dir, prefix, fn); err != nil {
			return err
		}
	}
	return nil
}

// indexEntry is a candidate block file of one subdirectory.
type indexEntry struct {
	name fileName
	ent  fs.DirEntry
}

// indexDir calls fn for the blocks of one subdirectory, sorted, each once
// even if it is stored both raw and compressed (the raw file wins, as in
// Get).
func (v *Volume) indexDir(ctx context.Context, dir, prefix string, fn func(blockstore.BlockInfo) error) error {
	const op = "dirvolume.Index"
	f, err := v.root.Open(dir)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return blockstore.E(op, "cannot open a volume subdirectory", err)
	}
	defer f.Close()
	var cands []indexEntry
	for {
		ents, err := f.ReadDir(1024)
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), prefix) || !e.Type().IsRegular() {
				continue
			}
			if n, ok := parseName(e.Name()); ok && !n.trash {
				cands = append(cands, indexEntry{n, e})
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return blockstore.E(op, "cannot list a volume subdirectory", err)
		}
		if err := ctx.Err(); err != nil {
			return blockstore.E(op, err)
		}
	}
	// A raw name is a prefix of its compressed names, so it sorts first.
	sort.Slice(cands, func(i, j int) bool { return cands[i].ent.Name() < cands[j].ent.Name() })

	last := ""
	for _, c := range cands {
		if c.name.hash == last {
			continue
		}
		if err := ctx.Err(); err != nil {
			return blockstore.E(op, err)
		}
		fi, err := c.ent.Info()
		if isNotExist(err) {
			continue // trashed or replaced since the readdir
		}
		if err != nil {
			return blockstore.E(op, "cannot stat a block file", err)
		}
		size := fi.Size()
		if c.name.zst {
			size = c.name.size
		}
		if !fi.Mode().IsRegular() || fi.Size() > blockstore.MaxBlockSize {
			v.log.Warn("skipping a file that cannot be a block: move it out of the volume", "file", v.abs(join(dir, c.ent.Name())))
			continue
		}
		h, err := blockstore.ParseHash(c.name.hash)
		if err != nil {
			continue // unreachable: parseName checked the hash
		}
		last = c.name.hash
		if err := fn(blockstore.BlockInfo{Hash: h, Size: size, Mtime: fi.ModTime()}); err != nil {
			return err
		}
	}
	return nil
}
