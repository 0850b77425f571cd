package usage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/state"
)

// Flusher writes a Counter's snapshots to the state database. Each flush
// is (proxy, instance, seq) with seq increasing; a flush that failed is
// retried with the same seq and the same rows until it is written, so a
// retry after an ambiguous commit (the commit landed, its answer was lost)
// is a no-op in the database and nothing is counted twice. Counts made
// meanwhile wait in the Counter for the next flush. A crash loses what was
// counted since the last flush (at most one interval).
type Flusher struct {
	counter  *Counter
	store    state.UsageStore
	proxy    string
	instance string
	log      *slog.Logger

	mu      sync.Mutex // one flush at a time
	seq     int64
	pending []state.UsageRow // the rows of flush seq, not yet written
	failing bool             // in an outage: logged once, at its start and end
	tries   int

	flushes, failures prometheus.Counter
}

// NewFlusher returns a Flusher of c's counts into store, as proxy.
func NewFlusher(c *Counter, store state.UsageStore, proxy string, log *slog.Logger, reg prometheus.Registerer) *Flusher {
	b := make([]byte, 8)
	rand.Read(b)
	f := &Flusher{counter: c, store: store, proxy: proxy, instance: hex.EncodeToString(b), log: log,
		flushes:  prometheus.NewCounter(prometheus.CounterOpts{Name: "keepgate_usage_flushes_total", Help: "Usage flushes written to the state database."}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{Name: "keepgate_usage_flush_errors_total", Help: "Usage flushes that failed (retried with back-off)."}),
	}
	if reg != nil {
		reg.MustRegister(f.flushes, f.failures)
	}
	return f
}

// Flush writes the pending flush, if a previous one failed, then a new
// snapshot. It returns the first error (the rows stay pending).
func (f *Flusher) Flush(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for round := 0; round < 2; round++ {
		if f.pending == nil {
			rows := f.counter.Snapshot()
			if len(rows) == 0 {
				return nil
			}
			f.seq++
			f.pending = rows
		}
		err := f.store.AddUsage(ctx, state.Flush{Proxy: f.proxy, Instance: f.instance, Seq: f.seq}, f.pending)
		if err != nil {
			f.failures.Inc()
			f.tries++
			if !f.failing {
				f.failing = true
				f.log.Warn("usage flush failed; the counts are kept and the flush retried with back-off", "error", err.Error())
			}
			return err
		}
		f.flushes.Inc()
		f.pending = nil
		if f.failing {
			f.log.Info("usage flush written again after an outage", "failed_tries", f.tries)
			f.failing, f.tries = false, 0
		}
	}
	return nil
}

// Run flushes every interval until ctx ends; a failed flush is retried
// after 0.5 s, doubling up to the interval. The last flush, at shutdown,
// is Close's.
func (f *Flusher) Run(ctx context.Context, interval time.Duration) {
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := f.Flush(fctx)
		cancel()
		switch {
		case err == nil:
			wait = interval
		case wait == interval:
			wait = 500 * time.Millisecond
		default:
			wait = min(2*wait, interval)
		}
	}
}

// Close writes what is left, trying for at most timeout.
func (f *Flusher) Close(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var err error
	for delay := 100 * time.Millisecond; ; delay *= 2 {
		if err = f.Flush(ctx); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			f.log.Error("usage counts since the last flush could not be written at shutdown", "error", err.Error())
			return err
		case <-time.After(delay):
		}
	}
}
