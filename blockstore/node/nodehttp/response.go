package nodehttp

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// writeBlock sends an opened block: 200 or 206 headers, then the body
// with a progress deadline toward the client. A body cut short after the
// headers is logged; the response then ends short of its Content-Length.
func (a *api) writeBlock(w http.ResponseWriter, r *http.Request, rd *node.Reader) {
	w.WriteHeader(setBlockHeaders(w.Header(), rd))
	pw := httpserver.NewProgressWriter(w, a.o.BodyIdleTimeout)
	defer pw.Clear()
	if _, err := rd.WriteTo(pw); err != nil {
		a.logFor(r.Context()).Warn("block body cut short", "error", err.Error(), "canceled", r.Context().Err() != nil)
	}
}

// setBlockHeaders sets the headers of a block response and returns its
// status: 200, or 206 for a part.
func setBlockHeaders(h http.Header, rd *node.Reader) int {
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(rd.N, 10))
	if rd.Vouched() {
		h.Set(keepwire.DataVerified, keepwire.VerifiedChunks)
	}
	if rd.Partial() {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", rd.Off, rd.Off+rd.N-1, rd.Size))
		return http.StatusPartialContent
	}
	return http.StatusOK
}

// writeStored answers a PUT: where the block is stored, and its locator.
func writeStored(w http.ResponseWriter, res node.PutResult, locator string) {
	hd := w.Header()
	hd.Set(keepwire.ReplicasStored, strconv.Itoa(res.Replicas))
	hd.Set(keepwire.StorageClassesConfirmed, keepwire.FormatConfirmed(res.Classes))
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, locator+"\n")
}

// indexWriter writes index lines, "hash+size mtime_ns", buffered.
type indexWriter struct {
	bw      *bufio.Writer
	line    []byte
	started bool
}

func newIndexWriter(w http.ResponseWriter) *indexWriter {
	return &indexWriter{bw: bufio.NewWriterSize(w, 64<<10)}
}

func (iw *indexWriter) add(bi blockstore.BlockInfo) error {
	iw.started = true
	iw.line = fmt.Appendf(iw.line[:0], "%s+%d %d\n", bi.Hash, bi.Size, bi.Mtime.UnixNano())
	_, err := iw.bw.Write(iw.line)
	return err
}

// finish ends the index: with its blank line when complete is set.
func (iw *indexWriter) finish(complete bool) {
	if complete {
		iw.bw.WriteByte('\n')
	}
	iw.bw.Flush()
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// failRead answers a failed block read; a 416 names the block's size in
// "Content-Range: bytes */SIZE" (RFC 9110 §15.5.17).
func (a *api) failRead(w http.ResponseWriter, r *http.Request, req node.ReadRequest, err error) {
	if blockstore.Is(err, blockstore.KindBadRange) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", req.Locator.Size))
	}
	a.fail(w, r, err)
}

// fail answers with err: 499 if the client has gone (unless err says what
// was wrong with its body), else the status of err's kind. Server-side
// failures are logged with their cause.
func (a *api) fail(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil && !clientFault(err) {
		err = blockstore.E("node", blockstore.KindCanceled, err)
	}
	level := slog.LevelDebug
	if blockstore.StatusOf(err) >= 500 {
		level = slog.LevelWarn
	}
	a.logFor(r.Context()).Log(r.Context(), level, "request failed", "method", r.Method,
		"kind", blockstore.KindOf(err).String(), "error", err.Error())
	httpserver.WriteError(w, err)
}

// clientFault reports whether err says what was wrong with a request
// body: those are answered as such even when the connection has been
// half-closed (which cancels the request context).
func clientFault(err error) bool {
	switch blockstore.KindOf(err) {
	case blockstore.KindCanceled, blockstore.KindTimeout, blockstore.KindLengthMismatch, blockstore.KindHashMismatch, blockstore.KindTooLarge:
		return true
	}
	return false
}

// logFor returns the node's logger with the request id of ctx.
func (a *api) logFor(ctx context.Context) *slog.Logger {
	if id := httpserver.RequestIDFrom(ctx); id != "" {
		return a.cfg.Logger.With("request_id", id)
	}
	return a.cfg.Logger
}
