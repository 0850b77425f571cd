// Package metering is the seam around every transfer through keepproxy:
// Admit before a transfer moves a byte, Record after it ended. Usage
// counters, rate caps, concurrency caps and the transfer audit log plug in
// here, as Admitters and Accountants, without touching the handlers.
//
// The life of one transfer: the HTTP layer calls Start, which puts a
// *Transfer into the request's context; the handler fills in what it
// learns (operation, principal, block, replicas); the data plane adds the
// stores it touched (Touch); the HTTP layer stamps status, bytes, time to
// first byte and duration, and calls Meter.Record once. Every transfer
// attempt is recorded, refused ones too.
package metering

import (
	"context"
	"sync"
	"time"
)

// Transfer is one transfer attempt. Field names here are the audit log's
// (see README "Transfer audit log"). It never holds a token, a secret or a
// locator's signature.
type Transfer struct {
	Time      time.Time // when the request arrived
	RequestID string
	ProxyID   string // which keepproxy answered
	Host      string // the Host the client connected to
	Rule      string // the forwarding rule that matched ("" without rules)
	Client    string // client address (X-Forwarded-For only from trusted proxies)
	UserAgent string

	PrincipalKind string // "token-file", "api", "access-key"; "" when not authenticated
	PrincipalID   string // the principal's id, never its secret
	Storage       string

	Op    string // "put", "post", "get", "head", "index"
	Block string // hash+size, never a signature

	ClassesAsked     []string
	ClassesConfirmed map[string]int
	ReplicasWanted   int
	ReplicasStored   int

	BytesIn  int64 // request body bytes received from the client
	BytesOut int64 // block bytes sent to the client

	Status    int
	ErrorKind string // blockstore.Kind name of the error answered, "" on success

	TTFB     time.Duration // until the response's first byte (its header)
	Duration time.Duration

	// NoAudit: the principal's transfers are kept out of the audit log
	// (an access key with activity_event_logging off); usage still counts.
	NoAudit bool

	// In and Out pace the request body (what the client sends) and the
	// response body (what it receives), e.g. a key's rate caps; set by an
	// Admitter, nil when unpaced.
	In, Out Pacer

	mu     sync.Mutex
	stores []string
}

// Touch records that the transfer talked to store (a service UUID). Safe
// for concurrent use; a store touched twice is listed once.
func (t *Transfer) Touch(store string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range t.stores {
		if s == store {
			return
		}
	}
	t.stores = append(t.stores, store)
}

// Stores returns the stores touched, in the order first touched.
func (t *Transfer) Stores() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]string(nil), t.stores...)
}

type ctxKey struct{}

// With returns ctx carrying t.
func With(ctx context.Context, t *Transfer) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// From returns the transfer of ctx, or a throw-away one when ctx carries
// none (so callers never check for nil).
func From(ctx context.Context) *Transfer {
	if t, ok := ctx.Value(ctxKey{}).(*Transfer); ok {
		return t
	}
	return &Transfer{}
}

// Touch records store on the transfer of ctx, if any.
func Touch(ctx context.Context, store string) {
	if t, ok := ctx.Value(ctxKey{}).(*Transfer); ok {
		t.Touch(store)
	}
}

// Pacer paces one direction of a transfer's body (a rate cap). Contract:
// Max is the most bytes one Wait may ask for (callers cut their reads and
// writes to it); Wait blocks until n more bytes may move, or ctx ends
// (then it returns ctx's error). Safe for concurrent use: one Pacer may be
// shared by all the streams of a key.
type Pacer interface {
	Max() int
	Wait(ctx context.Context, n int) error
}

// Admitter decides, before any body byte moves, whether a transfer may
// start. Contract: Admit answers at once (never queues); a refusal is an
// error with a blockstore Kind (KindOverloaded → 503 + Retry-After,
// ...), which the caller answers and records.
// When Admit returns nil the caller calls release exactly once when the
// transfer ends (release may be nil).
type Admitter interface {
	Admit(ctx context.Context, t *Transfer) (release func(), err error)
}

// Accountant records finished transfers. Contract: Record must not block
// the request (buffer or drop, and count what it drops), must be safe for
// concurrent use, and must not keep t after it returns (copy what it
// needs).
type Accountant interface {
	Record(ctx context.Context, t *Transfer)
}

// Meter fans Admit and Record out to every Admitter and Accountant, in
// order. The zero Meter admits everything and records nothing.
type Meter struct {
	Admitters   []Admitter
	Accountants []Accountant
}

// Admit asks every Admitter; on the first refusal the ones that admitted
// are released and the refusal is returned.
func (m *Meter) Admit(ctx context.Context, t *Transfer) (func(), error) {
	var releases []func()
	releaseAll := func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}
	for _, a := range m.Admitters {
		rel, err := a.Admit(ctx, t)
		if err != nil {
			releaseAll()
			return func() {}, err
		}
		if rel != nil {
			releases = append(releases, rel)
		}
	}
	var once sync.Once
	return func() { once.Do(releaseAll) }, nil
}

// Record hands t to every Accountant.
func (m *Meter) Record(ctx context.Context, t *Transfer) {
	for _, a := range m.Accountants {
		a.Record(ctx, t)
	}
}
