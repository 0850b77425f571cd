package usage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/every"
	"github.com/keepgate/keepgate/metering"
)

// KeyLimits are one principal's limits; 0 means none.
type KeyLimits struct {
	RateOutKbps   int64 // what the key receives (GET bodies); 1 kbps = 1,000 bit/s
	RateInKbps    int64 // what it sends (PUT/POST bodies)
	MaxConcurrent int   // requests in flight on this proxy
}

// Source tells a principal's limits. Contract: answers from a cache on
// the hot path (it is asked on every admitted request); ok is false for a
// principal without limits (token-file and API principals) or one it
// cannot look up now; safe for concurrent use.
type Source interface {
	LimitsOf(ctx context.Context, kind, id string) (l KeyLimits, ok bool)
}

// Limits is the metering.Admitter of access keys' limits. Each key (each
// principal the Source knows) has one pacer per direction, shared by all
// its transfers on this proxy, at the key's cap divided by the live
// proxies (unlimited without a cap); and a count of its requests in
// flight, beyond max_concurrent_requests refused at once with 429 +
// Retry-After. Limits are looked up on every request and, for keys with
// transfers running, every RefreshInterval (Run), so a changed cap holds
// within that even for transfers already running.
type Limits struct {
	source  Source
	proxies func() int

	mu   sync.Mutex
	keys map[string]*keyState
}

type keyState struct {
	kind     string
	limits   KeyLimits
	inflight int
	idleAt   time.Time
	out, in  *pacer
}

// RefreshInterval is how often Run re-reads the limits of busy keys.
const RefreshInterval = 250 * time.Millisecond

// NewLimits returns limits from source; proxies tells how many proxies
// share the caps (nil: 1).
func NewLimits(source Source, proxies func() int) *Limits {
	if proxies == nil {
		proxies = func() int { return 1 }
	}
	return &Limits{source: source, proxies: proxies, keys: map[string]*keyState{}}
}

var _ metering.Admitter = (*Limits)(nil)

// Admit implements metering.Admitter.
func (l *Limits) Admit(ctx context.Context, t *metering.Transfer) (func(), error) {
	if t.PrincipalID == "" {
		return nil, nil
	}
	kl, ok := l.source.LimitsOf(ctx, t.PrincipalKind, t.PrincipalID)
	l.mu.Lock()
	defer l.mu.Unlock()
	name := t.PrincipalKind + "/" + t.PrincipalID
	ks := l.keys[name]
	if !ok {
		if ks == nil {
			return nil, nil // a principal without limits
		}
		kl = ks.limits // cannot tell now: keep what holds
	}
	if ks == nil {
		ks = &keyState{kind: t.PrincipalKind, out: newPacer(), in: newPacer()}
		l.keys[name] = ks
	}
	l.apply(ks, kl)
	if kl.MaxConcurrent > 0 && ks.inflight >= kl.MaxConcurrent {
		return nil, &blockstore.Error{Kind: blockstore.KindTooManyRequests,
			Msg: fmt.Sprintf("access key %s has %d requests in flight, its max_concurrent_requests; retry when one has finished", t.PrincipalID, ks.inflight)}
	}
	ks.inflight++
	// Paced even without a cap (an unlimited pacer costs one call per
	// copy buffer), so a cap set while the transfer runs applies to it.
	t.Out, t.In = ks.out, ks.in
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			ks.inflight--
			if ks.inflight == 0 {
				ks.idleAt = time.Now()
			}
			l.mu.Unlock()
		})
	}, nil
}

// apply sets ks's pacers to kl shared over the live proxies; l.mu held.
func (l *Limits) apply(ks *keyState, kl KeyLimits) {
	ks.limits = kl
	n := float64(max(1, l.proxies()))
	ks.out.set(float64(kl.RateOutKbps) * 1000 / 8 / n)
	ks.in.set(float64(kl.RateInKbps) * 1000 / 8 / n)
}

// Refresh re-reads the limits of the keys with transfers in flight and
// forgets keys idle for over a minute (their buckets start full again).
func (l *Limits) Refresh(ctx context.Context) {
	l.mu.Lock()
	type busyKey struct{ name, kind, id string }
	var busy []busyKey
	for name, ks := range l.keys {
		switch {
		case ks.inflight > 0:
			busy = append(busy, busyKey{name, ks.kind, name[len(ks.kind)+1:]})
		case time.Since(ks.idleAt) > time.Minute:
			delete(l.keys, name)
		}
	}
	l.mu.Unlock()
	for _, b := range busy {
		kl, ok := l.source.LimitsOf(ctx, b.kind, b.id)
		if !ok {
			continue // cannot tell now: keep what holds
		}
		l.mu.Lock()
		if ks := l.keys[b.name]; ks != nil {
			l.apply(ks, kl)
		}
		l.mu.Unlock()
	}
}

// Run refreshes every RefreshInterval until ctx ends.
func (l *Limits) Run(ctx context.Context) {
	every.Do(ctx, RefreshInterval, l.Refresh)
}
