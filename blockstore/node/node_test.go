package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
)

func memVolume() *memvolume.Volume {
	return memvolume.New(blockstore.TrashPolicy{MinAge: 0, Lifetime: time.Hour})
}

func TestNewValidates(t *testing.T) {
	m := Mount{UUID: "u1", Volume: memVolume()}
	for _, opt := range []Options{
		{RequireSignatures: true},
		{Mounts: []Mount{m, m}},
		{Mounts: []Mount{{UUID: "x"}}},
		{MemoryBudget: 1000, BufferSize: 2000},
	} {
		if _, err := New(opt); err == nil {
			t.Errorf("New(%+v) accepted", opt)
		}
	}
}

// Options reports the options with their defaults filled in.
func TestOptionsDefaults(t *testing.T) {
	n, err := New(Options{Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	o := n.Options()
	if o.Version != "v1" || o.Logger == nil || o.Registry == nil || o.BudgetWait != 2*time.Second ||
		o.MemoryBudget != 256<<20 || o.BufferSize != 1<<20 || o.TrashConcurrency != 4 {
		t.Fatalf("options: %+v", o)
	}
}

// AdmitRequest hands out MaxConcurrentRequests slots; one more waits
// BudgetWait, then is Overloaded and counted; a released slot is free again.
func TestAdmitRequest(t *testing.T) {
	reg := prometheus.NewRegistry()
	n, err := New(Options{MaxConcurrentRequests: 2, BudgetWait: 50 * time.Millisecond, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r1, err1 := n.AdmitRequest(ctx)
	_, err2 := n.AdmitRequest(ctx)
	if err1 != nil || err2 != nil {
		t.Fatalf("within the cap: %v %v", err1, err2)
	}
	start := time.Now()
	if _, err := n.AdmitRequest(ctx); !blockstore.Is(err, blockstore.KindOverloaded) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("over the cap: %v after %v", err, time.Since(start))
	}
	want := "# HELP keepstore_overload_rejections_total Requests answered 503 because a budget was spent, by reason (memory, requests).\n" +
		"# TYPE keepstore_overload_rejections_total counter\n" + `keepstore_overload_rejections_total{reason="requests"} 1` + "\n"
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keepstore_overload_rejections_total"); err != nil {
		t.Error(err)
	}
	r1()
	if _, err := n.AdmitRequest(ctx); err != nil {
		t.Fatalf("after a release: %v", err)
	}

	// Without a cap every request is admitted.
	free, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := free.AdmitRequest(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
