package tunnel

import (
	"math/rand/v2"
	"time"
)

// Clock is the time source of the supervisor and the keepalive, so tests
// can drive the slow host-key retry without waiting a minute.
type Clock interface {
	Now() time.Time
	// After waits like time.After.
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Backoff computes the delays between connection attempts: exponential
// from Min to Max, each delay drawn at random from [d/2, d] so that many
// sites cut off by one outage do not redial in step. A session that stayed
// healthy for ResetAfter starts the sequence over.
type Backoff struct {
	Min, Max, ResetAfter time.Duration
	// Rand returns a float in [0, 1); nil: math/rand/v2.
	Rand func() float64

	attempt int
}

// Next returns the delay before the next attempt and advances.
func (b *Backoff) Next() time.Duration {
	d := b.Min
	for i := 0; i < b.attempt && d < b.Max; i++ {
		d *= 2
	}
	d = min(d, b.Max)
	if b.attempt < 62 {
		b.attempt++
	}
	r := rand.Float64
	if b.Rand != nil {
		r = b.Rand
	}
	return d/2 + time.Duration(r()*float64(d/2))
}

// Healthy tells the back-off how long the last session was up; after
// ResetAfter or more, the next delay is Min again.
func (b *Backoff) Healthy(up time.Duration) {
	if up >= b.ResetAfter {
		b.attempt = 0
	}
}
