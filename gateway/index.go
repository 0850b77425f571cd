package gateway

import (
	"bufio"
	"context"
	"io"
	"net/http"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// indexBuf is what one /index answer holds: a line scanner over the
// store's answer and a write buffer toward the client, from the budget.
const indexBuf = 128 << 10

// streamIndex answers /index by streaming every store's index in turn,
// each store's blank-line terminator dropped and one final blank line
// added, so a complete answer ends in "\n\n" (or is exactly "\n" when
// empty). Memory is bounded (indexBuf, from the requester's budget share)
// whatever the number of blocks. A first store that fails is an error
// answer; a store that fails once lines were sent aborts the response, so
// the client sees no terminating blank line: an incomplete index is never
// mistaken for a complete one.
func (g *Gateway) streamIndex(w http.ResponseWriter, r *http.Request, id *Identity, prefix, token string) {
	ctx := r.Context()
	who := principalKey(id)
	if err := g.budget.Acquire(ctx, who, indexBuf); err != nil {
		g.fail(w, r, err)
		return
	}
	defer g.budget.Release(who, indexBuf)
	path := "index"
	if prefix != "" {
		path += "/" + prefix
	}
	bw := bufio.NewWriterSize(w, indexBuf/2)
	started := false
	for _, svc := range g.Services() {
		body, err := g.openIndex(ctx, svc, path, token)
		if err == nil {
			if !started {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.WriteHeader(http.StatusOK)
				started = true
			}
			err = copyIndex(bw, body)
			body.Close()
		}
		if err != nil {
			if !started {
				g.fail(w, r, err)
				return
			}
			g.log.Warn("index cut short", "request_id", httpserver.RequestIDFrom(ctx), "store", svc.UUID, "error", err.Error())
			bw.Flush()
			panic(http.ErrAbortHandler)
		}
	}
	if !started {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	bw.WriteByte('\n')
	bw.Flush()
}

func (g *Gateway) openIndex(ctx context.Context, svc Service, path, token string) (io.ReadCloser, error) {
	resp, err := g.up.get(ctx, svc, path, http.MethodGet, token, httpserver.RequestIDFrom(ctx), 0)
	if err != nil {
		return nil, &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "index request to a keep store failed: " + blockstore.Message(err), Err: err}
	}
	return resp.Body, nil
}

// copyIndex copies one store's index lines to out without its blank-line
// terminator; an answer without one is an error.
func copyIndex(out *bufio.Writer, body io.Reader) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	complete := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			complete = true
			continue
		}
		complete = false // data after a terminator
		out.Write(line)
		out.WriteByte('\n')
	}
	if sc.Err() != nil || !complete {
		return &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "a keep store sent an incomplete index"}
	}
	return nil
}
