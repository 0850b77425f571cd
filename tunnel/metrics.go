package tunnel

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are keeptunnel's Prometheus series (namespace keeptunnel).
type metrics struct {
	connected     prometheus.Gauge
	sessions      prometheus.Counter
	reconnects    prometheus.Counter
	failures      *prometheus.CounterVec // by kind
	lastError     *prometheus.GaugeVec   // 1 for the kind of the last error, 0 for the others
	lastErrorTime prometheus.Gauge
	forwardBytes  *prometheus.CounterVec // by forward, direction (to_store, from_store)
	forwardConns  *prometheus.CounterVec // by forward, result (ok, local_down)
	forwardActive *prometheus.GaugeVec   // by forward

	kinds []Kind
}

// errorKinds are the kinds a session can end with, pre-set in lastError.
var errorKinds = []Kind{KindConfig, KindDNS, KindRefused, KindUnreachable, KindConnectTimeout, KindHandshake, KindHandshakeTimeout,
	KindHostKeyUnknown, KindHostKeyMismatch, KindHostKeyRevoked, KindAuth, KindForwardDenied, KindKeepalive, KindConnectionLost}

func newMetrics(reg prometheus.Registerer, forwards []Forward) (*metrics, error) {
	const ns = "keeptunnel"
	m := &metrics{
		connected:     prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "connected", Help: "1 while a session with every forward granted is up."}),
		sessions:      prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "sessions_total", Help: "Sessions established (every forward granted)."}),
		reconnects:    prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "reconnects_total", Help: "Sessions established after the first one."}),
		failures:      prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "session_failures_total", Help: "Failed connection attempts and ended sessions, by error kind."}, []string{"kind"}),
		lastError:     prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "last_error", Help: "1 for the kind of the last error, 0 for the other kinds."}, []string{"kind"}),
		lastErrorTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_error_timestamp_seconds", Help: "Unix time of the last error (0: none yet)."}),
		forwardBytes:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "forward_bytes_total", Help: "Bytes carried per forward: to_store (from the server side to the local store) and from_store."}, []string{"forward", "direction"}),
		forwardConns:  prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "forward_connections_total", Help: "Forwarded connections per forward, by result (ok, local_down)."}, []string{"forward", "result"}),
		forwardActive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "forward_connections_active", Help: "Forwarded connections open now."}, []string{"forward"}),
		kinds:         errorKinds,
	}
	for _, c := range []prometheus.Collector{m.connected, m.sessions, m.reconnects, m.failures, m.lastError, m.lastErrorTime, m.forwardBytes, m.forwardConns, m.forwardActive} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, k := range m.kinds {
		m.lastError.WithLabelValues(string(k)).Set(0)
	}
	for _, f := range forwards {
		m.forwardBytes.WithLabelValues(f.Name, "to_store")
		m.forwardBytes.WithLabelValues(f.Name, "from_store")
		m.forwardActive.WithLabelValues(f.Name)
	}
	return m, nil
}

func (m *metrics) recordError(k Kind, unixSeconds float64) {
	m.failures.WithLabelValues(string(k)).Inc()
	for _, o := range m.kinds {
		v := 0.0
		if o == k {
			v = 1
		}
		m.lastError.WithLabelValues(string(o)).Set(v)
	}
	m.lastErrorTime.Set(unixSeconds)
}
