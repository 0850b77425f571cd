package httpserver

import "github.com/prometheus/client_golang/prometheus"

// connMetrics are a connLimiter's metrics.
type connMetrics struct {
	open, idle      prometheus.Gauge
	shed            *prometheus.CounterVec // by reason
	reclaimed       prometheus.Counter
	acceptErrors    prometheus.Counter
	headersRejected prometheus.Counter
}

// Reasons a connection is shed (label values of <ns>_connections_shed_total).
const (
	shedGlobal    = "max_connections"
	shedPerClient = "max_connections_per_client"
)

// newConnMetrics registers the connection metrics of namespace ns on reg.
func newConnMetrics(reg prometheus.Registerer, ns string, max int) (*connMetrics, error) {
	m := &connMetrics{
		open: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections_open",
			Help: "Client connections open (shed ones excluded)."}),
		idle: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections_idle",
			Help: "Open client connections waiting for a request (keep-alive, or new and silent)."}),
		shed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "connections_shed_total",
			Help: "Connections refused with 503 (or closed) because a connection cap was reached."}, []string{"reason"}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "connections_reclaimed_total",
			Help: "Idle connections closed to make room for new ones near a connection cap."}),
		acceptErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "accept_errors_total",
			Help: "Failed accepts (e.g. too many open files), retried with back-off."}),
		headersRejected: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "header_fields_rejected_total",
			Help: "Requests answered 431 for having more header fields than max_header_fields."}),
	}
	maxConns := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connections_max",
		Help: "The connection cap in force (max_connections, possibly lowered to fit ulimit -n)."})
	maxConns.Set(float64(max))
	for _, c := range []prometheus.Collector{m.open, m.idle, m.shed, m.reclaimed, m.acceptErrors, m.headersRejected, maxConns} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	m.shed.WithLabelValues(shedGlobal)
	m.shed.WithLabelValues(shedPerClient)
	return m, nil
}
