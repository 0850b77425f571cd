package usage

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/state"
)

type cellKey struct {
	principal, storage string
	hour               int64 // Unix seconds of the hour's start
}

// cell is one row's counters; adds are atomic, a snapshot swaps them out.
type cell struct {
	bytesIn, bytesOut, blocksIn, blocksOut, replicaBytes, requests, e4xx, e5xx atomic.Int64
}

// Counter counts finished transfers per (principal, storage, hour). The
// hour is the one the transfer ended in. Transfers without a principal
// (refused before authentication) are in the Prometheus series only.
type Counter struct {
	now func() time.Time
	// mu: Record holds it shared around finding a cell and adding to it,
	// Snapshot exclusively, so a cell it deletes receives no late add.
	mu    sync.RWMutex
	cells sync.Map // cellKey → *cell

	bytesIn, bytesOut, requests *prometheus.CounterVec
}

// NewCounter returns a Counter whose per-storage series are registered
// on reg (nil: not exported); now is the clock (nil: time.Now).
func NewCounter(reg prometheus.Registerer, now func() time.Time) *Counter {
	if now == nil {
		now = time.Now
	}
	c := &Counter{now: now,
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keepgate_usage_bytes_in_total",
			Help: "Request body bytes received from clients (PUT, POST), per storage."}, []string{"storage"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keepgate_usage_bytes_out_total",
			Help: "Block bytes sent to clients in GET bodies, per storage."}, []string{"storage"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keepgate_usage_requests_total",
			Help: "Block requests (PUT, POST, GET, HEAD, index) by storage and status class."}, []string{"storage", "class"}),
	}
	if reg != nil {
		reg.MustRegister(c.bytesIn, c.bytesOut, c.requests)
	}
	return c
}

var _ metering.Accountant = (*Counter)(nil)

// Record implements metering.Accountant: a few atomic adds.
func (c *Counter) Record(_ context.Context, t *metering.Transfer) {
	status := t.Status
	c.bytesIn.WithLabelValues(t.Storage).Add(float64(t.BytesIn))
	c.bytesOut.WithLabelValues(t.Storage).Add(float64(t.BytesOut))
	c.requests.WithLabelValues(t.Storage, strconv.Itoa(status/100)+"xx").Inc()
	if t.PrincipalID == "" {
		return
	}
	ok := status == http.StatusOK || status == http.StatusPartialContent
	k := cellKey{principal: t.PrincipalID, storage: t.Storage, hour: c.now().Unix() / 3600 * 3600}
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, found := c.cells.Load(k)
	if !found {
		v, _ = c.cells.LoadOrStore(k, &cell{})
	}
	x := v.(*cell)
	x.requests.Add(1)
	if t.BytesIn != 0 {
		x.bytesIn.Add(t.BytesIn)
	}
	if t.BytesOut != 0 {
		x.bytesOut.Add(t.BytesOut)
	}
	switch {
	case status >= 500:
		x.e5xx.Add(1)
	case status >= 400:
		x.e4xx.Add(1)
	}
	put := t.Op == "put" || t.Op == "post"
	if put && t.ReplicasStored > 0 {
		x.replicaBytes.Add(int64(t.ReplicasStored) * blockSize(t))
	}
	if ok && put {
		x.blocksIn.Add(1)
	}
	if ok && t.Op == "get" {
		x.blocksOut.Add(1)
	}
}

// blockSize is the size of a PUT's block ("hash+size"), else the bytes
// received.
func blockSize(t *metering.Transfer) int64 {
	if _, s, ok := strings.Cut(t.Block, "+"); ok {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return n
		}
	}
	return t.BytesIn
}

// Snapshot takes what was counted since the last snapshot (the counters
// restart from zero) as rows; cells of past hours with nothing new are
// dropped.
func (c *Counter) Snapshot() []state.UsageRow {
	c.mu.Lock()
	defer c.mu.Unlock()
	current := c.now().Unix() / 3600 * 3600
	var rows []state.UsageRow
	c.cells.Range(func(k, v any) bool {
		key, x := k.(cellKey), v.(*cell)
		r := state.UsageRow{AccessKey: key.principal, Storage: key.storage, Hour: time.Unix(key.hour, 0).UTC(),
			BytesIn: x.bytesIn.Swap(0), BytesOut: x.bytesOut.Swap(0), BlocksIn: x.blocksIn.Swap(0), BlocksOut: x.blocksOut.Swap(0),
			ReplicaBytesWritten: x.replicaBytes.Swap(0), Requests: x.requests.Swap(0), Errors4xx: x.e4xx.Swap(0), Errors5xx: x.e5xx.Swap(0)}
		if r == (state.UsageRow{AccessKey: r.AccessKey, Storage: r.Storage, Hour: r.Hour}) {
			if key.hour < current {
				c.cells.Delete(k)
			}
			return true
		}
		rows = append(rows, r)
		return true
	})
	return rows
}
