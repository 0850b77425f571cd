package gateway

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/keepgate/keepgate/blockstore"
)

// Budget caps the bytes of buffer memory all requests together may hold.
// A request that cannot get its share within the wait is refused with
// KindOverloaded (503 + Retry-After) instead of growing memory.
type Budget struct {
	sem   *semaphore.Weighted
	total int64
	wait  time.Duration
	inUse prometheus.Gauge
}

// NewBudget makes a budget of total bytes.
func NewBudget(total int64, wait time.Duration, inUse prometheus.Gauge) *Budget {
	return &Budget{sem: semaphore.NewWeighted(total), total: total, wait: wait, inUse: inUse}
}

// Acquire takes n bytes; release them with Release(n).
func (b *Budget) Acquire(ctx context.Context, n int64) error {
	if n > b.total {
		return blockstore.Errorf(blockstore.KindOverloaded, "request needs %d bytes of buffer but the memory budget is %d", n, b.total)
	}
	wctx, cancel := context.WithTimeout(ctx, b.wait)
	defer cancel()
	if err := b.sem.Acquire(wctx, n); err != nil {
		if ctx.Err() != nil {
			return blockstore.E("budget", blockstore.KindCanceled, ctx.Err())
		}
		return blockstore.Errorf(blockstore.KindOverloaded, "server busy: memory budget in use, retry later")
	}
	if b.inUse != nil {
		b.inUse.Add(float64(n))
	}
	return nil
}

// Release returns n bytes.
func (b *Budget) Release(n int64) {
	b.sem.Release(n)
	if b.inUse != nil {
		b.inUse.Sub(float64(n))
	}
}
