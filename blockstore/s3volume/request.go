package s3volume

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// S3 request names, the "op" label of the metrics.
const (
	opHeadBucket = "head_bucket"
	opHead       = "head"
	opGet        = "get"
	opPut        = "put"
	opPutMarker  = "put_marker"
	opGetSums    = "get_checksums"
	opPutSums    = "put_checksums"
	opUpload     = "multipart_upload"
	opCopy       = "copy"
	opDelete     = "delete"
	opList       = "list"
)

// call runs one S3 request, fn, under the volume's concurrency limit,
// records it in the metrics, and retries it with back-off while it fails in
// a temporary way (see classify), at most v.retries times and, when again
// is not nil, only while again() allows. It returns fn's last error
// unclassified (see fail), or ctx's error (as a *blockstore.Error of kind
// canceled or timeout) once ctx is done.
func (v *Volume) call(ctx context.Context, req string, again func() bool, fn func(ctx context.Context) error) error {
	_, err := v.callHold(ctx, req, again, false, fn)
	return err
}

// callHold is call; with hold, a successful request keeps its concurrency
// slot and the caller must call the returned release (a Get's body is an
// S3 request in flight until it is closed).
func (v *Volume) callHold(ctx context.Context, req string, again func() bool, hold bool, fn func(ctx context.Context) error) (release func(), err error) {
	for attempt := 0; ; attempt++ {
		if err := v.acquire(ctx); err != nil {
			return nil, blockstore.E(err)
		}
		start := time.Now()
		err := fn(ctx)
		v.metrics.observe(req, start, err)
		if err == nil && hold {
			return v.releaser(), nil
		}
		v.release()
		if err == nil {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, blockstore.E(ctx.Err())
		}
		_, retry := classify(err)
		if !retry || attempt >= v.retries || (again != nil && !again()) {
			return nil, err
		}
		d := v.backoffFor(attempt)
		v.log.Debug("retrying S3 request", "request", req, "attempt", attempt+1, "delay", d, "err", err)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, blockstore.E(ctx.Err())
		case <-t.C:
		}
	}
}

// backoffFor is the delay before retry attempt+1: v.backoff doubled per
// attempt, capped, and jittered down by up to half.
func (v *Volume) backoffFor(attempt int) time.Duration {
	d := v.backoff << min(attempt, 16)
	if d > backoffCap || d <= 0 {
		d = backoffCap
	}
	return d/2 + rand.N(d/2+1)
}

// acquire takes a concurrency slot, giving up when ctx is done.
func (v *Volume) acquire(ctx context.Context) error {
	select {
	case v.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (v *Volume) release() { <-v.sem }

// releaser returns a function releasing one slot, harmless to call twice.
func (v *Volume) releaser() func() {
	done := false
	return func() {
		if !done {
			done = true
			v.release()
		}
	}
}

// fail turns an error from call into the volume's error for op: ctx's own
// errors keep their kind (canceled, timeout); S3 and network errors are
// classified with a message saying what to check.
func (v *Volume) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*blockstore.Error); ok {
		return blockstore.E(op, err)
	}
	kind, _ := classify(err)
	return blockstore.E(op, kind, v.hint(kind, err), err)
}
