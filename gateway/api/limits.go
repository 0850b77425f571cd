package gatewayapi

import (
	"context"
	"io"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/metering"
)

// The body-stream hooks of rate caps: a transfer whose Admitters set
// Transfer.In or Transfer.Out (an access key's caps) has its request body
// read, and its response body written, through the pacer. Reads and writes
// are cut to the pacer's Max (a token bucket's burst) and each is paid
// for: reads after they return (what actually came in), writes before
// they go out.

// pacedBody returns r paced by p (r itself when p is nil).
func pacedBody(ctx context.Context, r io.Reader, p metering.Pacer) io.Reader {
	if p == nil {
		return r
	}
	return &pacedReader{ctx: ctx, r: r, p: p}
}

type pacedReader struct {
	ctx context.Context
	r   io.Reader
	p   metering.Pacer
}

func (pr *pacedReader) Read(b []byte) (int, error) {
	if m := pr.p.Max(); len(b) > m {
		b = b[:m]
	}
	n, err := pr.r.Read(b)
	if n > 0 {
		if werr := pr.p.Wait(pr.ctx, n); werr != nil && err == nil {
			err = werr
		}
	}
	return n, err
}

// pacedOutput returns w paced by p (w itself when p is nil).
func pacedOutput(ctx context.Context, w io.Writer, p metering.Pacer) io.Writer {
	if p == nil {
		return w
	}
	return &pacedWriter{ctx: ctx, w: w, p: p}
}

type pacedWriter struct {
	ctx context.Context
	w   io.Writer
	p   metering.Pacer
}

func (pw *pacedWriter) Write(b []byte) (int, error) {
	done := 0
	for done < len(b) {
		paid, err := payAhead(pw.ctx, pw.p, len(b)-done)
		if err != nil {
			return done, err
		}
		n, err := pw.w.Write(b[done : done+paid])
		done += n
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// minRateReader cuts off an upload that, after a grace period, averages
// fewer than min bytes per second (KindTimeout, 408): a client dripping a
// byte every few seconds cannot hold its buffers for ever.
type minRateReader struct {
	r     io.Reader
	min   int64
	grace time.Duration
	start time.Time
	n     int64
}

func newMinRateReader(r io.Reader, min int64, grace time.Duration) *minRateReader {
	return &minRateReader{r: r, min: min, grace: grace, start: time.Now()}
}

func (m *minRateReader) Read(p []byte) (int, error) {
	if el := time.Since(m.start); el > m.grace && float64(m.n) < float64(m.min)*el.Seconds() {
		return 0, blockstore.Errorf(blockstore.KindTimeout, "request body too slow: %d bytes in %s, below the minimum of %d bytes/s", m.n, el.Round(time.Second), m.min)
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	return n, err
}

// payAhead is what a paced writer pays before it sends: want cut to p's
// burst, and that many tokens waited for. It returns how many bytes may go.
func payAhead(ctx context.Context, p metering.Pacer, want int) (int, error) {
	if m := p.Max(); m > 0 && want > m {
		want = m
	}
	return want, p.Wait(ctx, want)
}
