package dirvolume

import (
	"context"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// Touch implements blockstore.Volume: it sets the block file's mtime to now.
func (v *Volume) Touch(ctx context.Context, h blockstore.Hash) error {
	const op = "dirvolume.Touch"
	unlock, err := v.lockLive(ctx, op, h)
	if err != nil {
		return err
	}
	defer unlock()
	l, err := v.find(op, h)
	if err != nil {
		return err
	}
	now := time.Now()
	err = v.root.Chtimes(l.path, now, now)
	if isNotExist(err) {
		return notFound(op)
	}
	if err != nil {
		return v.ioErr(op, "cannot set the block file's mtime", err)
	}
	return nil
}

// Trash implements blockstore.Volume. A block touched less than
// Policy.MinAge ago is left alone (and nil returned). Otherwise, with a zero
// Policy.Lifetime the block's files are deleted; else they are renamed to
// "<name>.trash.<deadline>", deadline being now + Lifetime in Unix seconds.
func (v *Volume) Trash(ctx context.Context, h blockstore.Hash) error {
	const op = "dirvolume.Trash"
	unlock, err := v.lockLive(ctx, op, h)
	if err != nil {
		return err
	}
	defer unlock()
	l, err := v.find(op, h)
	if err != nil {
		return err
	}
	now := time.Now()
	if now.Sub(l.info.ModTime()) < v.policy.MinAge {
		return nil
	}
	live := []fileName{l.name}
	if v.zstSeen.Load() {
		// Both forms may exist (see dropOtherForms): hide them all.
		names, err := v.namesOf(l.name.hash)
		if err != nil {
			return blockstore.E(op, "cannot list the block's subdirectory", err)
		}
		live = live[:0]
		for _, n := range names {
			if !n.trash {
				live = append(live, n)
			}
		}
	}
	dir := subdir(l.name.hash)
	deadline := now.Add(v.policy.Lifetime).Unix()
	for _, n := range live {
		p := join(dir, n.String())
		if v.policy.Lifetime <= 0 {
			if err := v.root.Remove(p); err != nil && !isNotExist(err) {
				return v.ioErr(op, "cannot delete the block file", err)
			}
			if err := v.root.Remove(sumsName(l.name.hash)); err != nil && !isNotExist(err) {
				v.log.Warn("cannot remove the checksum file of a deleted block", "file", v.abs(sumsName(l.name.hash)), "err", err)
			}
			continue
		}
		n.trash, n.deadline = true, deadline
		if err := v.root.Rename(p, join(dir, n.String())); err != nil && !isNotExist(err) {
			return v.ioErr(op, "cannot move the block file to the trash", err)
		}
	}
	return nil
}

// Untrash implements blockstore.Volume: it renames the most recently
// trashed files of the block (those with the latest deadline) back into
// place, touched.
func (v *Volume) Untrash(ctx context.Context, h blockstore.Hash) error {
	const op = "dirvolume.Untrash"
	unlock, err := v.lockLive(ctx, op, h)
	if err != nil {
		return err
	}
	defer unlock()
	hash := h.String()
	names, err := v.namesOf(hash)
	if err != nil {
		return blockstore.E(op, "cannot list the block's subdirectory", err)
	}
	// The most recent Trash renamed every form of the block with one
	// deadline: restore all of them, as they were.
	var latest []fileName
	for _, n := range names {
		switch {
		case !n.trash:
		case len(latest) == 0 || n.deadline > latest[0].deadline:
			latest = append(latest[:0], n)
		case n.deadline == latest[0].deadline:
			latest = append(latest, n)
		}
	}
	if len(latest) == 0 {
		return notFound(op)
	}
	dir := subdir(hash)
	now := time.Now()
	var restored []string
	for _, n := range latest {
		trashed := join(dir, n.String())
		// Touch first, so that the block reappears with its new mtime.
		err := v.root.Chtimes(trashed, now, now)
		if err == nil {
			err = v.root.Rename(trashed, join(dir, n.live()))
		}
		if isNotExist(err) {
			continue // EmptyTrash got there first
		}
		if err != nil {
			return v.ioErr(op, "cannot move the block file out of the trash", err)
		}
		if n.zst {
			v.zstSeen.Store(true)
		}
		restored = append(restored, n.live())
	}
	if len(restored) == 0 {
		return notFound(op)
	}
	v.dropOtherForms(hash, restored...)
	if err := v.syncDir(dir); err != nil {
		return v.ioErr(op, "the block was restored but its directory could not be synced to disk", err)
	}
	return nil
}

// EmptyTrash implements blockstore.Volume: it deletes the trash files whose
// deadline has passed, walking only the hex subdirectories. It goes on past
// files it cannot delete and returns the first such error.
func (v *Volume) EmptyTrash(ctx context.Context) error {
	const op = "dirvolume.EmptyTrash"
	dirs, err := v.subdirs("")
	if err != nil {
		return blockstore.E(op, "cannot list the volume directory", err)
	}
	now := time.Now().Unix()
	deleted, kept := 0, 0
	var firstErr error
	for _, dir := range dirs {
		if err := ctx.Err(); err != nil {
			return blockstore.E(op, err)
		}
		var sidecars []string
		err := v.eachName(dir, func(name string) error {
			if hash, ok := isSumsName(name); ok {
				sidecars = append(sidecars, hash)
				return nil
			}
			n, ok := parseName(name)
			if !ok || !n.trash {
				return nil
			}
			if n.deadline > now {
				kept++
				return nil
			}
			if err := v.root.Remove(join(dir, name)); err != nil && !isNotExist(err) {
				v.log.Warn("cannot delete expired trash", "file", join(dir, name), "err", err)
				if firstErr == nil {
					firstErr = blockstore.E(op, "cannot delete expired trash", err)
				}
				return nil
			}
			deleted++
			return nil
		})
		if err != nil && firstErr == nil {
			firstErr = blockstore.E(op, "cannot list a volume subdirectory", err)
		}
		for _, hash := range sidecars {
			v.dropOrphanSums(hash)
		}
	}
	if deleted > 0 {
		v.log.Info("emptied trash", "deleted", deleted, "kept", kept)
	}
	return firstErr
}
