package every

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int32
	done := make(chan struct{})
	start := time.Now()
	go func() {
		Do(ctx, 10*time.Millisecond, func(context.Context) {
			if n.Add(1) == 3 {
				cancel()
			}
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Do did not return after its context ended")
	}
	if n.Load() != 3 {
		t.Fatalf("%d calls; want 3 (none after the context ended)", n.Load())
	}
	if time.Since(start) < 30*time.Millisecond {
		t.Fatal("the first call came before one interval")
	}
}

func TestDoEndsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	Do(ctx, time.Hour, func(context.Context) { called = true })
	if called {
		t.Fatal("called after the context ended")
	}
}
