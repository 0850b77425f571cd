package statetest

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/state"
)

func usageRow(key, storage string, hour time.Time, n int64) state.UsageRow {
	return state.UsageRow{AccessKey: key, Storage: storage, Hour: hour, BytesIn: 1000 * n, BytesOut: 2000 * n, BlocksIn: n, BlocksOut: 2 * n,
		ReplicaBytesWritten: 2000 * n, Requests: 3 * n, Errors4xx: n / 2, Errors5xx: n / 3}
}

func runUsage(t *testing.T, e Engine) {
	ctx := context.Background()
	h0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	t.Run("UsageIsAdditivePerProxy", func(t *testing.T) {
		s := e.Open(t)
		if got, err := s.QueryUsage(ctx, state.UsageFilter{From: h0.Add(-time.Hour), To: h0.Add(time.Hour)}); err != nil || got == nil || len(got) != 0 {
			t.Fatalf("no usage: %v %#v, want an empty list", err, got)
		}
		a := state.Flush{Proxy: "proxy-a", Instance: "i1", Seq: 1}
		b := state.Flush{Proxy: "proxy-b", Instance: "i1", Seq: 1}
		if err := s.AddUsage(ctx, a, []state.UsageRow{usageRow("k1", "tenant-a", h0.Add(17*time.Minute), 1), usageRow("k2", "tenant-b", h0, 5)}); err != nil {
			t.Fatal(err)
		}
		if err := s.AddUsage(ctx, b, []state.UsageRow{usageRow("k1", "tenant-a", h0, 2)}); err != nil {
			t.Fatal(err)
		}
		a.Seq = 2
		if err := s.AddUsage(ctx, a, []state.UsageRow{usageRow("k1", "tenant-a", h0.Add(59*time.Minute), 4), usageRow("k1", "tenant-a", h0.Add(time.Hour), 1)}); err != nil {
			t.Fatal(err)
		}
		got, err := s.QueryUsage(ctx, state.UsageFilter{From: h0, To: h0.Add(2 * time.Hour)})
		want := []state.UsageRow{usageRow("k1", "tenant-a", h0, 7), usageRow("k2", "tenant-b", h0, 5), usageRow("k1", "tenant-a", h0.Add(time.Hour), 1)}
		// Errors4xx and Errors5xx are sums of n/2 and n/3 per row, not of n.
		want[0].Errors4xx, want[0].Errors5xx = 0+1+2, 0+0+1
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("QueryUsage: %v\n got %+v\nwant %+v", err, got, want)
		}
		if one, _ := s.QueryUsage(ctx, state.UsageFilter{Storage: "tenant-b", From: h0, To: h0.Add(2 * time.Hour)}); len(one) != 1 || one[0].AccessKey != "k2" {
			t.Fatalf("storage filter: %+v", one)
		}
		if one, _ := s.QueryUsage(ctx, state.UsageFilter{AccessKey: "k1", From: h0.Add(time.Hour), To: h0.Add(2 * time.Hour)}); len(one) != 1 || one[0].Requests != 3 {
			t.Fatalf("key and range filter: %+v", one)
		}
		day, _ := s.QueryUsage(ctx, state.UsageFilter{AccessKey: "k1", From: h0.Truncate(24 * time.Hour), To: h0.Add(24 * time.Hour), Daily: true})
		if len(day) != 1 || !day[0].Hour.Equal(h0.Truncate(24*time.Hour)) || day[0].BytesIn != 8000 {
			t.Fatalf("daily: %+v", day)
		}
	})
	t.Run("RetriedFlushCountsOnce", func(t *testing.T) {
		s := e.Open(t)
		f := state.Flush{Proxy: "p", Instance: "i1", Seq: 1}
		rows := []state.UsageRow{usageRow("k", "s", h0, 1)}
		for i := 0; i < 3; i++ { // the first commit was ambiguous: retried twice
			if err := s.AddUsage(ctx, f, rows); err != nil {
				t.Fatal(err)
			}
		}
		old := f // an older flush arriving late is refused too
		f.Seq = 3
		s.AddUsage(ctx, f, rows)
		old.Seq = 2
		s.AddUsage(ctx, old, rows)
		// Another life of the same proxy starts its own sequence.
		s.AddUsage(ctx, state.Flush{Proxy: "p", Instance: "i2", Seq: 1}, rows)
		if got, _ := s.QueryUsage(ctx, state.UsageFilter{From: h0, To: h0.Add(time.Hour)}); len(got) != 1 || got[0].BytesIn != 3000 {
			t.Fatalf("after retried flushes: %+v, want 3 flushes counted", got)
		}
	})
	t.Run("ConcurrentFlushes", func(t *testing.T) {
		s := e.Open(t)
		var wg sync.WaitGroup
		for p := 0; p < 4; p++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int64(1); i <= 10; i++ {
					f := state.Flush{Proxy: []string{"a", "b", "c", "d"}[p], Instance: "x", Seq: i}
					if err := s.AddUsage(ctx, f, []state.UsageRow{usageRow("k", "s", h0, 1)}); err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if got, _ := s.QueryUsage(ctx, state.UsageFilter{From: h0, To: h0.Add(time.Hour)}); len(got) != 1 || got[0].BlocksIn != 40 {
			t.Fatalf("40 concurrent flushes: %+v", got)
		}
	})
	t.Run("Heartbeats", func(t *testing.T) {
		s := e.Open(t)
		if n, err := s.Heartbeat(ctx, "p1", time.Minute); err != nil || n != 1 {
			t.Fatalf("first heartbeat: %d %v", n, err)
		}
		if n, _ := s.Heartbeat(ctx, "p2", time.Minute); n != 2 {
			t.Fatalf("two proxies: %d", n)
		}
		if n, _ := s.Heartbeat(ctx, "p1", time.Minute); n != 2 {
			t.Fatalf("p1 again: %d", n)
		}
		time.Sleep(20 * time.Millisecond)
		if n, _ := s.Heartbeat(ctx, "p1", 10*time.Millisecond); n != 1 {
			t.Fatalf("p2 stopped beating: %d live, want 1", n)
		}
	})
}
