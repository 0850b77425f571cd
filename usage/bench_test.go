package usage

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// The hot-path costs of accounting and of an unreached cap, per call;
// e2e's BenchmarkUsage measures them on real transfers.
func BenchmarkRecord(b *testing.B) {
	c := NewCounter(prometheus.NewRegistry(), nil)
	t := transfer("k", "get", 200, 0, 64<<20)
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c.Record(ctx, t)
		}
	})
}

// One Wait per 256 KiB copy buffer of a key whose cap is never reached
// (here 10 TB/s, so that this loop does not reach it either).
func BenchmarkPacerUnreached(b *testing.B) {
	p := newPacer()
	p.set(1e13)
	ctx := context.Background()
	b.SetBytes(256 << 10)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := p.Wait(ctx, 256<<10); err != nil {
				b.Fatal(err)
			}
		}
	})
}
