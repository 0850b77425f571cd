package audit

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/metering"
)

// OnFull says what happens when a sink cannot keep up.
type OnFull string

const (
	// Drop (the default): events that do not fit in a sink's queue are
	// dropped and counted in keepgate_audit_dropped_total; transfers go on.
	Drop OnFull = "drop"
	// Reject fails closed: while any sink is stalled, new transfers are
	// refused with 503 + Retry-After; they recover by themselves.
	Reject OnFull = "reject"
)

// Options configure a Log.
type Options struct {
	Sinks     []Sink
	QueueSize int    // events each sink's queue holds (default 10,000)
	OnFull    OnFull // default Drop
	// WriteTimeout bounds one write (default 1 s); a sink whose record has
	// waited longer than StallAfter (default 250 ms) counts as stalled.
	WriteTimeout, StallAfter time.Duration
	Logger                   *slog.Logger
	Registry                 prometheus.Registerer
}

// Log is the audit log: a metering.Accountant (Record) and, in Reject
// mode, a metering.Admitter (Admit). Record never blocks: each event is
// encoded once per sink and put into that sink's bounded queue, which one
// writer goroutine per sink drains with write deadlines, reconnecting with
// jittered back-off (0.1 s → 10 s) after a lost connection.
type Log struct {
	opt     Options
	writers []*writer
	m       *logMetrics
	mu      sync.RWMutex // Record holds it shared; Close exclusively
	closed  bool
	wg      sync.WaitGroup
}

type logMetrics struct {
	events, dropped, errors *prometheus.CounterVec
	queued, up              *prometheus.GaugeVec
}

func newLogMetrics(reg prometheus.Registerer) *logMetrics {
	m := &logMetrics{
		events:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keepgate_audit_events_total", Help: "Audit events written, by sink."}, []string{"sink"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keepgate_audit_dropped_total", Help: "Audit events dropped because the sink's queue was full, by sink."}, []string{"sink"}),
		errors:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keepgate_audit_write_errors_total", Help: "Failed opens and writes of audit sinks (each followed by a retry), by sink."}, []string{"sink"}),
		queued:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keepgate_audit_queue_length", Help: "Audit events waiting, by sink."}, []string{"sink"}),
		up:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "keepgate_audit_sink_up", Help: "1 while the sink is open and not stalled."}, []string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.dropped, m.errors, m.queued, m.up)
	}
	return m
}

// New starts a writer per sink. Sinks that cannot be opened yet (a syslog
// daemon not up) are retried in the background: the proxy starts anyway.
func New(opt Options) *Log {
	if opt.QueueSize <= 0 {
		opt.QueueSize = 10000
	}
	if opt.OnFull == "" {
		opt.OnFull = Drop
	}
	if opt.WriteTimeout <= 0 {
		opt.WriteTimeout = time.Second
	}
	if opt.StallAfter <= 0 {
		opt.StallAfter = 250 * time.Millisecond
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Log{opt: opt, m: newLogMetrics(opt.Registry)}
	for _, s := range opt.Sinks {
		w := &writer{log: l, sink: s, queue: make(chan Event, opt.QueueSize), reopen: make(chan struct{}, 1), stop: make(chan struct{}),
			queued: l.m.queued.WithLabelValues(s.Name()), dropped: l.m.dropped.WithLabelValues(s.Name())}
		l.m.up.WithLabelValues(s.Name()).Set(0)
		l.m.dropped.WithLabelValues(s.Name()) // exported from the start, at 0
		l.writers = append(l.writers, w)
		l.wg.Add(1)
		go w.run()
	}
	return l
}

// Record implements metering.Accountant.
func (l *Log) Record(_ context.Context, t *metering.Transfer) {
	if t.NoAudit {
		return
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return
	}
	e := NewEvent(t) // a copy: t is not kept; sinks encode it on their writer
	for _, w := range l.writers {
		select {
		case w.queue <- e:
			w.queued.Inc()
		default:
			w.drop()
		}
	}
}

// errStalled refuses transfers in Reject mode.
var errStalled = blockstore.Errorf(blockstore.KindOverloaded, "the transfer audit log is not accepting events (a log sink is stalled); retry shortly")

// Admit implements metering.Admitter: in Reject mode, a transfer is
// refused while any sink is stalled (its queue full, or its current record
// waiting longer than StallAfter).
func (l *Log) Admit(context.Context, *metering.Transfer) (func(), error) {
	if l.opt.OnFull != Reject {
		return nil, nil
	}
	for _, w := range l.writers {
		if w.stalled() {
			return nil, errStalled
		}
	}
	return nil, nil
}

// Reopen makes every file sink reopen its file (after logrotate moved it)
// and every connection be redialled.
func (l *Log) Reopen() {
	for _, w := range l.writers {
		select {
		case w.reopen <- struct{}{}:
		default:
		}
	}
}

// Close stops taking events and waits until the queues are written out or
// ctx ends; what is still queued then is counted as dropped.
func (l *Log) Close(ctx context.Context) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	for _, w := range l.writers {
		close(w.queue)
	}
	l.mu.Unlock()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		for _, w := range l.writers {
			close(w.stop)
		}
		<-done
	}
}

// writer drains one sink's queue.
type writer struct {
	log     *Log
	sink    Sink
	queue   chan Event
	reopen  chan struct{}
	stop    chan struct{}
	pending atomic.Int64 // unix nanos the current record was taken; 0 when none
	open    bool
	// lastWarn rate-limits the "dropping events" warning.
	lastWarn atomic.Int64
	// The sink's series, looked up once (Record runs on every request).
	queued  prometheus.Gauge
	dropped prometheus.Counter
}

func (w *writer) stalled() bool {
	if len(w.queue) == cap(w.queue) {
		return true
	}
	p := w.pending.Load()
	return p != 0 && time.Since(time.Unix(0, p)) > w.log.opt.StallAfter
}

func (w *writer) drop() {
	name := w.sink.Name()
	w.dropped.Inc()
	now := time.Now().UnixNano()
	if last := w.lastWarn.Load(); now-last > int64(10*time.Second) && w.lastWarn.CompareAndSwap(last, now) {
		w.log.opt.Logger.Warn("audit sink is not keeping up: dropping events (see keepgate_audit_dropped_total)", "sink", name)
	}
}

func (w *writer) run() {
	defer w.log.wg.Done()
	name := w.sink.Name()
	defer func() {
		w.sink.Close()
		w.log.m.up.WithLabelValues(name).Set(0)
		for range w.queue { // only after stop: what is left is lost
			w.queued.Dec()
			w.dropped.Inc()
		}
	}()
	for e := range w.queue {
		w.pending.Store(time.Now().UnixNano())
		rec, err := w.sink.Encode(e)
		ok := true
		if err != nil {
			w.log.opt.Logger.Error("audit event could not be encoded", "sink", name, "error", err.Error())
			w.dropped.Inc()
		} else if ok = w.deliver(rec); ok {
			w.log.m.events.WithLabelValues(name).Inc()
		} else {
			w.dropped.Inc()
		}
		w.pending.Store(0)
		w.queued.Dec()
		if !ok {
			return
		}
	}
}

// deliver writes rec, retrying until it is written; false when stopped.
func (w *writer) deliver(rec []byte) bool {
	name := w.sink.Name()
	backoff := 100 * time.Millisecond
	off := 0
	for {
		select {
		case <-w.stop:
			return false
		case <-w.reopen:
			if w.open {
				w.sink.Close()
				w.open, off = false, 0
			}
		default:
		}
		if !w.open {
			if err := w.sink.Open(time.Now().Add(w.log.opt.WriteTimeout)); err != nil {
				w.log.m.errors.WithLabelValues(name).Inc()
				w.log.opt.Logger.Warn("audit sink cannot be opened; retrying", "sink", name, "error", err.Error(), "retry_in", backoff.String())
				if !w.sleep(backoff) {
					return false
				}
				backoff = min(backoff*2, 10*time.Second)
				continue
			}
			w.open = true
			w.log.m.up.WithLabelValues(name).Set(1)
		}
		n, err := w.sink.Write(rec[off:], time.Now().Add(w.log.opt.WriteTimeout))
		off += n
		if err == nil && off >= len(rec) {
			w.log.m.up.WithLabelValues(name).Set(1)
			return true
		}
		if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			w.log.m.up.WithLabelValues(name).Set(0) // stalled: go on with the rest on this connection
			continue
		}
		w.log.m.errors.WithLabelValues(name).Inc()
		w.log.opt.Logger.Warn("audit sink write failed; reopening", "sink", name, "error", err.Error())
		w.sink.Close()
		w.open, off = false, 0
		w.log.m.up.WithLabelValues(name).Set(0)
		if !w.sleep(backoff) {
			return false
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// sleep waits about d (±20 %), or until stopped (false).
func (w *writer) sleep(d time.Duration) bool {
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-w.stop:
		return false
	}
}
