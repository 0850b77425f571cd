package gatewayapi

import (
	"bufio"
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
func (s *Server) streamIndex(w http.ResponseWriter, r *http.Request, req indexRequest) {
	ctx := r.Context()
	release, err := s.gw.Reserve(ctx, req.id, indexBuf)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer release()
	bw := bufio.NewWriterSize(w, indexBuf/2)
	started := false
	for _, svc := range s.gw.Services() {
		body, err := s.gw.OpenIndex(ctx, svc, req.prefix, req.token)
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
				s.fail(w, r, err)
				return
			}
			s.log.Warn("index cut short", "request_id", httpserver.RequestIDFrom(ctx), "store", svc.UUID, "error", err.Error())
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
