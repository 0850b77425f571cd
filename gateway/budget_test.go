package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

func TestBudgetShares(t *testing.T) {
	b := NewBudget(100, 50*time.Millisecond, nil).SetShare(25)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := b.Acquire(ctx, "a", 5); err != nil {
			t.Fatalf("a within its share: %v", err)
		}
	}
	t0 := time.Now()
	if err := b.Acquire(ctx, "a", 1); !blockstore.Is(err, blockstore.KindOverloaded) || time.Since(t0) > 20*time.Millisecond {
		t.Fatalf("a over its share: %v after %s (want Overloaded at once)", err, time.Since(t0))
	}
	if err := b.Acquire(ctx, "b", 25); err != nil {
		t.Fatalf("b while a holds its share: %v", err)
	}
	b.Release("a", 5)
	if err := b.Acquire(ctx, "a", 5); err != nil {
		t.Fatalf("a after a release: %v", err)
	}
	if err := b.Acquire(ctx, "", 50); err != nil { // the gateway's own work: the total only
		t.Fatalf("internal: %v", err)
	}
	if err := b.Acquire(ctx, "c", 1); !blockstore.Is(err, blockstore.KindOverloaded) {
		t.Fatalf("c with the total spent: %v", err)
	}
}
