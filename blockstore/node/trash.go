package node

import (
	"context"
	"sync"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// TrashItem is one entry of a trash list (KEEP-PROTOCOL §5.7).
type TrashItem struct {
	Locator string `json:"locator"`
	// BlockMtime is the copy's mtime in Unix nanoseconds, as the index
	// showed it: a copy whose mtime differs (touched since) is kept.
	BlockMtime int64 `json:"block_mtime"`
	// MountUUID limits the item to one mount; empty: every writable mount.
	MountUUID string `json:"mount_uuid"`
}

type trashQueue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	items      []TrashItem
	inProgress int
	stopped    bool
}

// SetTrashList replaces the trash queue with items; Run's workers process
// it in the background. KindMethodNotAllowed when trash is disabled.
func (n *Node) SetTrashList(items []TrashItem) error {
	if !n.opt.TrashEnabled {
		return blockstore.Errorf(blockstore.KindMethodNotAllowed, "method not allowed: trash is disabled on this keepstore")
	}
	q := &n.trashq
	q.mu.Lock()
	q.items = append([]TrashItem(nil), items...)
	q.cond.Broadcast()
	q.mu.Unlock()
	return nil
}

func (n *Node) trashWorker(ctx context.Context) {
	q := &n.trashq
	for {
		q.mu.Lock()
		for len(q.items) == 0 && !q.stopped {
			q.cond.Wait()
		}
		if q.stopped {
			q.mu.Unlock()
			return
		}
		it := q.items[0]
		q.items = q.items[1:]
		q.inProgress++
		q.mu.Unlock()

		outcome := n.trashItem(ctx, it)
		n.metrics.trashItems.WithLabelValues(outcome).Inc()

		q.mu.Lock()
		q.inProgress--
		q.mu.Unlock()
	}
}

// trashItem trashes one item's copies whose stored mtime still equals the
// item's; it returns the outcome for the metrics.
func (n *Node) trashItem(ctx context.Context, it TrashItem) string {
	loc, err := blockstore.ParseLocator(it.Locator)
	if err != nil {
		n.log.Warn("trash list: skipping an invalid locator", "locator", truncate(it.Locator, 80))
		return "invalid"
	}
	if time.Since(time.Unix(0, it.BlockMtime)) < n.opt.SignatureTTL {
		return "too_young"
	}
	mounts := n.writableByUUID()
	if it.MountUUID != "" {
		m, ok := n.byUUID[it.MountUUID]
		if !ok || m.ReadOnly {
			n.log.Warn("trash list: no writable mount with this uuid", "mount", truncate(it.MountUUID, 40))
			return "invalid"
		}
		mounts = []*mount{m}
	}
	outcome := "not_found"
	for _, m := range mounts {
		info, err := m.vol.Stat(ctx, loc.Hash)
		if err != nil {
			continue
		}
		if info.Mtime.UnixNano() != it.BlockMtime {
			if outcome == "not_found" {
				outcome = "mtime_changed"
			}
			continue
		}
		if err := m.vol.Trash(ctx, loc.Hash); err != nil {
			n.log.Warn("trash list: trash failed", "mount", m.UUID, "hash", loc.Hash.String(), "error", err.Error())
			outcome = "error"
			continue
		}
		if outcome != "error" {
			outcome = "trashed"
		}
	}
	return outcome
}
