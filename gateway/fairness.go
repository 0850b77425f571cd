package gateway

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// principalKey names whose share a request is paid from.
func principalKey(id *Identity) string {
	if id == nil {
		return ""
	}
	return id.Source + "/" + id.Name
}

// admitRead takes one store request slot and (for GET) the copy buffer
// from the caller's shares; the returned func gives them back.
func (g *Gateway) admitRead(ctx context.Context, id *Identity, head bool) (func(), error) {
	who := principalKey(id)
	if err := g.slots.Acquire(ctx, who, 1); err != nil {
		return nil, err
	}
	if head {
		return func() { g.slots.Release(who, 1) }, nil
	}
	if err := g.budget.Acquire(ctx, who, copyBufSize); err != nil {
		g.slots.Release(who, 1)
		return nil, err
	}
	return func() { g.budget.Release(who, copyBufSize); g.slots.Release(who, 1) }, nil
}

// postPiece is the unit in which a POST body is buffered and paid for.
const postPiece = 1 << 20

// postBody is a buffered POST body: pieces taken from the budget one at a
// time, as their bytes arrive, so a client that declares 64 MiB and sends
// slowly holds only what it has sent.
type postBody struct {
	g      *Gateway
	who    string
	pieces [][]byte
	held   int64
	hash   blockstore.Hash
}

// readPost reads exactly size bytes of body.
func (g *Gateway) readPost(ctx context.Context, id *Identity, body io.Reader, size int64) (*postBody, error) {
	pb := &postBody{g: g, who: principalKey(id)}
	sum := md5.New()
	for left := size; left > 0; {
		n := min(left, postPiece)
		if err := g.budget.Acquire(ctx, pb.who, n); err != nil {
			pb.release()
			return nil, err
		}
		pb.held += n
		p := make([]byte, n)
		if _, err := io.ReadFull(body, p); err != nil {
			pb.release()
			if blockstore.Is(err, blockstore.KindTimeout) {
				return nil, err
			}
			return nil, blockstore.E("POST", blockstore.KindLengthMismatch, "request body shorter than Content-Length", err)
		}
		sum.Write(p)
		pb.pieces = append(pb.pieces, p)
		left -= n
	}
	pb.hash = blockstore.Hash(sum.Sum(nil))
	return pb, nil
}

// reader returns the buffered body.
func (pb *postBody) reader() io.Reader {
	rs := make([]io.Reader, len(pb.pieces))
	for i, p := range pb.pieces {
		rs[i] = bytes.NewReader(p)
	}
	return io.MultiReader(rs...)
}

func (pb *postBody) release() {
	if pb.held > 0 {
		pb.g.budget.Release(pb.who, pb.held)
		pb.held = 0
	}
	pb.pieces = nil
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

// progressWriter moves the connection's write deadline to now+idle before
// every write: a client that keeps reading, however slowly, is served to
// the end; one that stops reading for idle is cut off and frees its share.
type progressWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func newProgressWriter(w http.ResponseWriter, idle time.Duration) *progressWriter {
	return &progressWriter{w: w, rc: http.NewResponseController(w), idle: idle}
}

func (p *progressWriter) Write(b []byte) (int, error) {
	_ = p.rc.SetWriteDeadline(time.Now().Add(p.idle))
	n, err := p.w.Write(b)
	if err != nil {
		err = fmt.Errorf("client stopped reading (no progress for %s): %w", p.idle, err)
	}
	return n, err
}

// clear removes the deadline once the body is sent.
func (p *progressWriter) clear() { _ = p.rc.SetWriteDeadline(time.Time{}) }
