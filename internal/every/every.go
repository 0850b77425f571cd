// Package every runs a function at a fixed interval until a context ends:
// the one periodic loop of keepgate's background work (token file
// polling, store discovery, trash emptying, heartbeats, key and limit
// refreshes).
package every

import (
	"context"
	"time"
)

// Do calls fn(ctx) every interval until ctx is done; the first call is one
// interval after Do starts. A call that runs longer than the interval
// delays the next one (ticks are not queued). Do returns when ctx is done,
// after any call in progress returned.
func Do(ctx context.Context, interval time.Duration, fn func(context.Context)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}
