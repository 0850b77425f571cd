package s3volume

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the package's collectors, shared by every volume registered
// with one Registerer and told apart by the "volume" label (the DeviceID).
type metrics struct {
	ops     *prometheus.CounterVec   // volume, op
	errs    *prometheus.CounterVec   // volume, op, kind
	bytes   *prometheus.CounterVec   // volume, direction
	seconds *prometheus.HistogramVec // volume, op
}

// newMetrics creates the collectors and registers them with reg (nil: not
// registered). A collector that reg already has — another volume got there
// first — is reused.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	const ns, sub = "keepstore", "s3"
	m := &metrics{
		ops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "ops_total",
			Help: "S3 requests sent (each retry counts), by volume and request."}, []string{"volume", "op"}),
		errs: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Failed S3 requests (each retry counts), by volume, request and error kind; not-found included."},
			[]string{"volume", "op", "kind"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "bytes_total",
			Help: "Block bytes sent to S3 (out) and received from it (in), by volume."}, []string{"volume", "direction"}),
		seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: "op_seconds",
			Help:    "S3 request latency until the response headers (uploads: until the server answered), by volume and request.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}},
			[]string{"volume", "op"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.ops, err = register(reg, m.ops); err != nil {
		return nil, err
	}
	if m.errs, err = register(reg, m.errs); err != nil {
		return nil, err
	}
	if m.bytes, err = register(reg, m.bytes); err != nil {
		return nil, err
	}
	if m.seconds, err = register(reg, m.seconds); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c with reg, or returns the identical collector reg
// already has.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
		return c, fmt.Errorf("a different collector is registered under the same name: %w", err)
	}
	return c, err
}

// volumeMetrics are the collectors curried with one volume's label.
type volumeMetrics struct {
	ops      *prometheus.CounterVec
	errs     *prometheus.CounterVec
	bytesIn  prometheus.Counter
	bytesOut prometheus.Counter
	seconds  prometheus.ObserverVec
}

func (m *metrics) forVolume(id string) volumeMetrics {
	l := prometheus.Labels{"volume": id}
	return volumeMetrics{
		ops:      m.ops.MustCurryWith(l),
		errs:     m.errs.MustCurryWith(l),
		bytesIn:  m.bytes.With(prometheus.Labels{"volume": id, "direction": "in"}),
		bytesOut: m.bytes.With(prometheus.Labels{"volume": id, "direction": "out"}),
		seconds:  m.seconds.MustCurryWith(l),
	}
}

// observe records one finished S3 request.
func (m volumeMetrics) observe(op string, start time.Time, err error) {
	m.ops.WithLabelValues(op).Inc()
	m.seconds.WithLabelValues(op).Observe(time.Since(start).Seconds())
	if err != nil {
		kind, _ := classify(err)
		m.errs.WithLabelValues(op, kind.String()).Inc()
	}
}
