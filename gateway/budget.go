package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/keepgate/keepgate/blockstore"
)

// Budget caps what all requests together may hold (bytes of buffer memory,
// or request slots toward the stores), and what any one principal may hold
// of it: its share. A request that would take its principal over the share
// is refused at once; one that cannot get its part of the total within the
// wait is refused too. Both are KindOverloaded (503 + Retry-After), never
// growing memory. So one client (however many connections it opens, and
// however slowly it sends or reads) holds at most its share, and the rest
// stays for everyone else: fair, not first come first served.
type Budget struct {
	sem   *semaphore.Weighted
	total int64
	share int64 // per principal; total when unset
	wait  time.Duration
	inUse prometheus.Gauge
	what  string // "memory budget" or "store request slots", for messages

	mu   sync.Mutex
	held map[string]int64 // principal → amount held
}

// NewBudget makes a budget of total units (bytes), with no per-principal
// share until SetShare.
func NewBudget(total int64, wait time.Duration, inUse prometheus.Gauge) *Budget {
	return &Budget{sem: semaphore.NewWeighted(total), total: total, share: total, wait: wait, inUse: inUse, what: "memory budget", held: map[string]int64{}}
}

// SetShare limits each principal to share units (≤ 0 or > total: total).
func (b *Budget) SetShare(share int64) *Budget {
	if share <= 0 || share > b.total {
		share = b.total
	}
	b.share = share
	return b
}

// Share is the most one principal may hold.
func (b *Budget) Share() int64 { return b.share }

// Acquire takes n units for principal who ("" for the gateway's own work,
// which is limited by the total only); give them back with Release(who, n).
func (b *Budget) Acquire(ctx context.Context, who string, n int64) error {
	if n > b.total || (who != "" && n > b.share) {
		return blockstore.Errorf(blockstore.KindOverloaded, "request needs %d of the %s but one client's share is %d", n, b.what, b.share)
	}
	if who != "" {
		b.mu.Lock()
		if b.held[who]+n > b.share {
			b.mu.Unlock()
			return blockstore.Errorf(blockstore.KindOverloaded, "server busy: your requests already hold your share of the %s; retry when some finish", b.what)
		}
		b.held[who] += n
		b.mu.Unlock()
	}
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, n); err != nil {
		b.unhold(who, n)
		if ctx.Err() != nil {
			return blockstore.E("budget", blockstore.KindCanceled, ctx.Err())
		}
		return blockstore.Errorf(blockstore.KindOverloaded, "server busy: %s in use, retry later", b.what)
	}
	if b.inUse != nil {
		b.inUse.Add(float64(n))
	}
	return nil
}

// Release returns n units taken by who.
func (b *Budget) Release(who string, n int64) {
	b.sem.Release(n)
	b.unhold(who, n)
	if b.inUse != nil {
		b.inUse.Sub(float64(n))
	}
}

func (b *Budget) unhold(who string, n int64) {
	if who == "" {
		return
	}
	b.mu.Lock()
	if b.held[who] -= n; b.held[who] <= 0 {
		delete(b.held, who)
	}
	b.mu.Unlock()
}
