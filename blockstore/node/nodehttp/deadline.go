package nodehttp

import (
	"io"
	"net/http"
	"time"

	"github.com/keepgate/keepgate/internal/httpserver"
)

// putBody is the request body read with progress-based deadlines
// (httpserver.ProgressBody). Once the body has ended cleanly, the read
// deadline is cleared (after a timeout it stays, so that nothing waits on
// the stalled client again): otherwise the server's background read on
// the connection would time out while the volumes finish the write
// (fsync, a second copy) and cancel the request.
func putBody(w http.ResponseWriter, r *http.Request, idle time.Duration) io.Reader {
	return &endClearsDeadline{r: httpserver.ProgressBody(w, r, idle), rc: http.NewResponseController(w)}
}

type endClearsDeadline struct {
	r    io.Reader
	rc   *http.ResponseController
	done bool
}

func (b *endClearsDeadline) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF // a further read would re-arm the deadline
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// progressWriter moves the connection's write deadline to now+idle before
// every write: a client that keeps reading, however slowly, is served to
// the end; one that stops reading for idle is cut off, which releases the
// request's share of the memory budget.
func progressWriter(w http.ResponseWriter, idle time.Duration) io.Writer {
	if idle <= 0 {
		return w
	}
	return &deadlineWriter{w: w, rc: http.NewResponseController(w), idle: idle}
}

type deadlineWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.idle))
	return d.w.Write(p)
}
