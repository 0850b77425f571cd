package usage

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/state"
)

func transfer(key, op string, status int, in, out int64) *metering.Transfer {
	return &metering.Transfer{PrincipalKind: "access-key", PrincipalID: key, Storage: "tenant-a", Op: op, Status: status,
		BytesIn: in, BytesOut: out, Block: "acbd18db4cc2f85cedef654fccc4a4d8+3", ReplicasStored: 2}
}

func TestCounter(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 59, 59, 0, time.UTC)
	reg := prometheus.NewRegistry()
	c := NewCounter(reg, func() time.Time { return now })
	ctx := context.Background()
	c.Record(ctx, transfer("k1", "put", 200, 3, 0))
	c.Record(ctx, transfer("k1", "get", 200, 0, 3))
	c.Record(ctx, transfer("k1", "get", 404, 0, 0))
	c.Record(ctx, transfer("k1", "get", 502, 0, 1)) // cut short: what moved counts
	c.Record(ctx, &metering.Transfer{Storage: "tenant-a", Op: "get", Status: 403})
	now = now.Add(time.Second) // the next hour
	c.Record(ctx, transfer("k1", "post", 200, 3, 0))
	rows := c.Snapshot()
	if len(rows) != 2 {
		t.Fatalf("%+v", rows)
	}
	byHour := map[int]state.UsageRow{}
	for _, r := range rows {
		byHour[r.Hour.Hour()] = r
	}
	want10 := state.UsageRow{AccessKey: "k1", Storage: "tenant-a", Hour: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), BytesIn: 3, BytesOut: 4,
		BlocksIn: 1, BlocksOut: 1, ReplicaBytesWritten: 6, Requests: 4, Errors4xx: 1, Errors5xx: 1}
	if byHour[10] != want10 || byHour[11].BlocksIn != 1 || byHour[11].Requests != 1 {
		t.Fatalf("rows %+v", rows)
	}
	if again := c.Snapshot(); len(again) != 0 {
		t.Fatalf("a second snapshot: %+v", again)
	}
	if got := testutil.ToFloat64(c.bytesOut.WithLabelValues("tenant-a")); got != 4 {
		t.Fatalf("per-storage bytes out: %v", got)
	}
	if n := testutil.CollectAndCount(c.requests); n != 3 { // 2xx, 4xx, 5xx of tenant-a; no key label
		t.Fatalf("%d request series", n)
	}
}

func TestCounterConcurrent(t *testing.T) {
	c := NewCounter(nil, nil)
	var wg sync.WaitGroup
	var total int64 // the snapshotting goroutine's until it is done
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			for _, r := range c.Snapshot() {
				total += r.BytesIn
			}
		}
	}()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				c.Record(context.Background(), transfer("k", "put", 200, 7, 0))
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-done
	for _, r := range c.Snapshot() {
		total += r.BytesIn
	}
	if total != 8*5000*7 {
		t.Fatalf("counted %d bytes, want %d", total, 8*5000*7)
	}
}

// ambiguous applies a flush, then reports it failed, the first time.
type ambiguous struct {
	state.Store
	mu      sync.Mutex
	applied map[int64]bool
	fails   int
	rows    []state.UsageRow
}

func (a *ambiguous) AddUsage(_ context.Context, f state.Flush, rows []state.UsageRow) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.applied[f.Seq] {
		a.applied[f.Seq] = true
		a.rows = append(a.rows, rows...)
	}
	if a.fails > 0 {
		a.fails--
		return errors.New("connection reset during COMMIT")
	}
	return nil
}

func TestFlusherRetriesOnce(t *testing.T) {
	c := NewCounter(nil, nil)
	st := &ambiguous{applied: map[int64]bool{}, fails: 2}
	f := NewFlusher(c, st, "p1", slog.New(slog.DiscardHandler), nil)
	ctx := context.Background()
	c.Record(ctx, transfer("k", "put", 200, 100, 0))
	if err := f.Flush(ctx); err == nil {
		t.Fatal("first flush: no error")
	}
	c.Record(ctx, transfer("k", "put", 200, 10, 0)) // counted meanwhile
	if err := f.Flush(ctx); err == nil {
		t.Fatal("second flush: no error")
	}
	if err := f.Close(time.Second); err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, r := range st.rows {
		sum += r.BytesIn
	}
	if sum != 110 || len(st.applied) != 2 {
		t.Fatalf("bytes in %d over %d flushes, want 110 over 2", sum, len(st.applied))
	}
}

type fixed map[string]KeyLimits

func (f fixed) LimitsOf(_ context.Context, kind, id string) (KeyLimits, bool) {
	l, ok := f[id]
	return l, ok && kind == "access-key"
}

func TestLimits(t *testing.T) {
	src := fixed{"capped": {RateOutKbps: 400000, RateInKbps: 8000, MaxConcurrent: 2}, "free": {}}
	live := 1
	l := NewLimits(src, func() int { return live })
	ctx := context.Background()
	var rels []func()
	for i := 0; i < 2; i++ {
		tr := transfer("capped", "get", 0, 0, 0)
		rel, err := l.Admit(ctx, tr)
		if err != nil || tr.Out == nil || tr.In == nil {
			t.Fatalf("admit %d: %v %v", i, err, tr.Out)
		}
		rels = append(rels, rel)
	}
	tr := transfer("capped", "get", 0, 0, 0)
	if _, err := l.Admit(ctx, tr); !blockstore.Is(err, blockstore.KindTooManyRequests) || blockstore.StatusOf(err) != 429 || !blockstore.KindOf(err).RetryAfter() {
		t.Fatalf("third concurrent request: %v", err)
	}
	out := rels[0]
	out()
	out() // twice: counted once
	if _, err := l.Admit(ctx, transfer("capped", "get", 0, 0, 0)); err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if _, err := l.Admit(ctx, transfer("capped", "get", 0, 0, 0)); err == nil {
		t.Fatal("a double release freed two slots")
	}
	tr = transfer("unknown", "get", 0, 0, 0)
	if rel, err := l.Admit(ctx, tr); err != nil || rel != nil || tr.Out != nil {
		t.Fatalf("a principal without limits: %v %v", err, tr.Out)
	}
	// A key without limits gets unlimited pacers, so a cap set while its
	// transfer runs applies to it.
	tr = transfer("free", "get", 0, 0, 0)
	if rel, err := l.Admit(ctx, tr); err != nil || rel == nil || tr.Out == nil || tr.Out.(*pacer).lim.Limit() < 1e300 {
		t.Fatalf("a key without limits: %v %v", err, tr.Out)
	}
	src["free"] = KeyLimits{RateOutKbps: 8000}
	l.Refresh(ctx)
	if tr.Out.(*pacer).lim.Limit() != 1e6 {
		t.Fatalf("a cap set while the key's transfer runs: %v", tr.Out.(*pacer).lim.Limit())
	}
	// Caps: bytes per second, divided by the live proxies; the burst is
	// 100 ms of the rate within [64 KiB, 8 MiB].
	ks := l.keys["access-key/capped"]
	if ks.out.lim.Limit() != 50e6 || ks.out.Max() != 5000000 || ks.in.lim.Limit() != 1e6 || ks.in.Max() != 100000 {
		t.Fatalf("pacers: %v/%d %v/%d", ks.out.lim.Limit(), ks.out.Max(), ks.in.lim.Limit(), ks.in.Max())
	}
	live = 2
	src["capped"] = KeyLimits{RateOutKbps: 800000, MaxConcurrent: 2}
	l.Refresh(ctx)
	if ks.out.lim.Limit() != 50e6 || ks.in.lim.Limit() < 1e300 {
		t.Fatalf("after a change with two proxies: out %v in %v", ks.out.lim.Limit(), ks.in.lim.Limit())
	}
	// A pacer's Wait takes more than the burst in pieces.
	if err := ks.out.Wait(ctx, 3*ks.out.Max()); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := ks.out.Wait(cctx, ks.out.Max()); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled wait: %v", err)
	}
}
