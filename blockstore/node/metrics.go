package node

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/keepgate/keepgate/blockstore"
)

// metrics are the node's Prometheus collectors (namespace "keepstore");
// the HTTP request metrics are nodehttp's.
type metrics struct {
	bytesIn     prometheus.Counter
	bytesOut    prometheus.Counter
	volOps      *prometheus.CounterVec // volume, operation
	volErrors   *prometheus.CounterVec // volume, operation, kind
	corrupt     *prometheus.CounterVec // volume
	sumsGained  *prometheus.CounterVec // volume
	putChecks   *prometheus.CounterVec // by: md5, chunk_checksums
	budgetInUse prometheus.Gauge
	budgetLimit prometheus.Gauge
	overloaded  *prometheus.CounterVec // reason
	trashItems  *prometheus.CounterVec // outcome
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns = "keepstore"
	m := &metrics{
		bytesIn: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "received_bytes_total",
			Help: "Block bytes received in PUT bodies."}),
		bytesOut: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "sent_bytes_total",
			Help: "Block bytes sent in GET bodies."}),
		volOps: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "volume_operations_total",
			Help: "Volume operations, by volume and operation."}, []string{"volume", "operation"}),
		volErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "volume_errors_total",
			Help: "Failed volume operations, by volume, operation and error kind (not-found included)."}, []string{"volume", "operation", "kind"}),
		corrupt: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "corrupt_blocks_total",
			Help: "Stored copies found not to hash to their name when read, by volume."}, []string{"volume"}),
		sumsGained: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "checksums_added_total",
			Help: "Blocks written before chunk checksums that were given them after a whole verified read or a checksum scan, by volume."}, []string{"volume"}),
		putChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "put_verifications_total",
			Help: "PUT bodies accepted, by how they were verified: md5 (hashed here), chunk_checksums (keepproxy hashed the MD5 and vouched with its chunk checksums)."}, []string{"by"}),
		budgetInUse: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "buffer_budget_in_use_bytes",
			Help: "Copy-buffer memory taken from the budget."}),
		budgetLimit: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "buffer_budget_limit_bytes",
			Help: "The copy-buffer memory budget."}),
		overloaded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "overload_rejections_total",
			Help: "Requests answered 503 because a budget was spent, by reason (memory, requests)."}, []string{"reason"}),
		trashItems: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "trash_list_items_total",
			Help: "Trash-list items processed, by outcome."}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{m.bytesIn, m.bytesOut, m.volOps, m.volErrors,
		m.corrupt, m.sumsGained, m.putChecks, m.budgetInUse, m.budgetLimit, m.overloaded, m.trashItems} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// budget is the byte-weighted memory budget for copy buffers.
type budget struct {
	sem   *semaphore.Weighted
	limit int64
	used  atomic.Int64
	wait  time.Duration
	m     *metrics
}

func newBudget(limit int64, wait time.Duration, m *metrics) *budget {
	m.budgetLimit.Set(float64(limit))
	return &budget{sem: semaphore.NewWeighted(limit), limit: limit, wait: wait, m: m}
}

// acquire takes w bytes of the budget, waiting at most b.wait: then it
// fails with KindOverloaded (503 + Retry-After), or KindCanceled if ctx
// ends first. release gives the bytes back; call it exactly once.
func (b *budget) acquire(ctx context.Context, w int64) (release func(), err error) {
	if !b.sem.TryAcquire(w) {
		c, cancel := context.WithTimeout(ctx, b.wait)
		err := b.sem.Acquire(c, w)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil, blockstore.E("node.budget", blockstore.KindCanceled, ctx.Err())
			}
			b.m.overloaded.WithLabelValues("memory").Inc()
			return nil, blockstore.Errorf(blockstore.KindOverloaded, "server busy: the memory budget (%d bytes) is in use; retry later", b.limit)
		}
	}
	b.m.budgetInUse.Set(float64(b.used.Add(w)))
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			b.m.budgetInUse.Set(float64(b.used.Add(-w)))
			b.sem.Release(w)
		}
	}, nil
}

func (b *budget) inUse() int64 { return b.used.Load() }

// instrumented wraps a volume to count its operations and errors.
type instrumented struct {
	blockstore.Volume
	uuid string
	m    *metrics
}

func instrument(v blockstore.Volume, uuid string, m *metrics) blockstore.Volume {
	return &instrumented{Volume: v, uuid: uuid, m: m}
}

func (v *instrumented) count(op string, err error) {
	v.m.volOps.WithLabelValues(v.uuid, op).Inc()
	if err != nil {
		v.m.volErrors.WithLabelValues(v.uuid, op, blockstore.KindOf(err).String()).Inc()
	}
}

func (v *instrumented) Put(ctx context.Context, h blockstore.Hash, r io.Reader, size int64) error {
	err := v.Volume.Put(ctx, h, r, size)
	v.count("put", err)
	return err
}

func (v *instrumented) Get(ctx context.Context, h blockstore.Hash, off, n int64) (io.ReadCloser, blockstore.BlockInfo, error) {
	rc, info, err := v.Volume.Get(ctx, h, off, n)
	v.count("get", err)
	return rc, info, err
}

func (v *instrumented) Stat(ctx context.Context, h blockstore.Hash) (blockstore.BlockInfo, error) {
	info, err := v.Volume.Stat(ctx, h)
	v.count("stat", err)
	return info, err
}

func (v *instrumented) Touch(ctx context.Context, h blockstore.Hash) error {
	err := v.Volume.Touch(ctx, h)
	v.count("touch", err)
	return err
}

func (v *instrumented) Trash(ctx context.Context, h blockstore.Hash) error {
	err := v.Volume.Trash(ctx, h)
	v.count("trash", err)
	return err
}

func (v *instrumented) Untrash(ctx context.Context, h blockstore.Hash) error {
	err := v.Volume.Untrash(ctx, h)
	v.count("untrash", err)
	return err
}

func (v *instrumented) EmptyTrash(ctx context.Context) error {
	err := v.Volume.EmptyTrash(ctx)
	v.count("empty_trash", err)
	return err
}

func (v *instrumented) SetChecksums(ctx context.Context, h blockstore.Hash, sums *blockstore.Checksums) error {
	err := v.Volume.SetChecksums(ctx, h, sums)
	v.count("set_checksums", err)
	return err
}

func (v *instrumented) Index(ctx context.Context, prefix string, fn func(blockstore.BlockInfo) error) error {
	var fnErr error
	err := v.Volume.Index(ctx, prefix, func(bi blockstore.BlockInfo) error {
		fnErr = fn(bi)
		return fnErr
	})
	if err != nil && fnErr != nil {
		v.count("index", nil) // the consumer stopped the listing, not the volume
	} else {
		v.count("index", err)
	}
	return err
}
