package usage

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/keepgate/keepgate/internal/every"
	"github.com/keepgate/keepgate/state"
)

// Heartbeats records this proxy as alive in the state database every
// interval and keeps the number of live proxies (those that beat within
// three intervals) for Limits. While the database is unreachable the last
// number is kept.
type Heartbeats struct {
	store    state.UsageStore
	proxy    string
	interval time.Duration
	log      *slog.Logger
	live     atomic.Int64
}

// NewHeartbeats returns heartbeats of proxy; Live is 1 until the first beat.
func NewHeartbeats(store state.UsageStore, proxy string, interval time.Duration, log *slog.Logger) *Heartbeats {
	h := &Heartbeats{store: store, proxy: proxy, interval: interval, log: log}
	h.live.Store(1)
	return h
}

// Live is the number of live proxies, at least 1.
func (h *Heartbeats) Live() int { return int(max(1, h.live.Load())) }

// Beat records one heartbeat and updates Live.
func (h *Heartbeats) Beat(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.interval)
	defer cancel()
	n, err := h.store.Heartbeat(ctx, h.proxy, 3*h.interval)
	if err != nil {
		return err
	}
	if old := h.live.Swap(int64(n)); old != int64(n) {
		h.log.Info("live proxies changed; each takes its share of every key's rate cap", "live_proxies", n)
	}
	return nil
}

// Run beats every interval until ctx ends (errors are the flusher's to
// report: both fail together).
func (h *Heartbeats) Run(ctx context.Context) {
	h.Beat(ctx)
	every.Do(ctx, h.interval, func(ctx context.Context) { h.Beat(ctx) })
}
