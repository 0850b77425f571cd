package usage

import (
	"context"
	"math"

	"golang.org/x/time/rate"

	"github.com/keepgate/keepgate/metering"
)

// pacer is one key's limiter in one direction, shared by all its streams
// (a metering.Pacer).
type pacer struct{ lim *rate.Limiter }

var _ metering.Pacer = (*pacer)(nil)

func newPacer() *pacer { return &pacer{lim: rate.NewLimiter(rate.Inf, maxBurst)} }

// Bursts: 100 ms of the rate, between 64 KiB and 8 MiB. Small enough that
// 8 streams share a cap evenly and a new transfer's head start is short;
// large enough that a writer the scheduler kept waiting (a busy machine)
// catches up instead of losing the time, and that an unreached cap costs
// one limiter call per copy buffer.
const (
	minBurst = 64 << 10
	maxBurst = 8 << 20
)

// set applies bytesPerSec (≤ 0: no cap); the running streams see it at
// their next read or write.
func (p *pacer) set(bytesPerSec float64) {
	if bytesPerSec <= 0 {
		if p.lim.Limit() != rate.Inf {
			p.lim.SetLimit(rate.Inf)
			p.lim.SetBurst(maxBurst)
		}
		return
	}
	burst := int(math.Min(maxBurst, math.Max(minBurst, bytesPerSec/10)))
	if p.lim.Limit() != rate.Limit(bytesPerSec) {
		p.lim.SetLimit(rate.Limit(bytesPerSec))
	}
	if p.lim.Burst() != burst {
		p.lim.SetBurst(burst)
	}
}

// Max implements metering.Pacer.
func (p *pacer) Max() int { return p.lim.Burst() }

// Wait implements metering.Pacer: WaitN refuses more than the burst, so n
// is taken in pieces of at most the (current) burst.
func (p *pacer) Wait(ctx context.Context, n int) error {
	for n > 0 {
		take := min(n, p.lim.Burst())
		if err := p.lim.WaitN(ctx, take); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		n -= take
	}
	return nil
}
