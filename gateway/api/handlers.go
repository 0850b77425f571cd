package gatewayapi

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/metering"
)

// The block routes: each parses and resolves its request (resolve.go),
// makes one call to the gateway, and writes the answer or fails.

var copyBufs = sync.Pool{New: func() any { b := make([]byte, gateway.CopyBufSize); return &b }}

func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Via", "HTTP/1.1 keepproxy")
	req, release, err := s.resolveGet(r)
	defer release()
	switch {
	case err != nil:
		s.fail(w, r, err)
	case req.Locator.Hash == blockstore.EmptyHash: // needs no store
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	default:
		s.serveBlock(w, r, req)
	}
}

// serveBlock opens the block on the stores and sends it; a body cut short
// after the headers aborts the response, so the client never sees a clean
// one.
func (s *Server) serveBlock(w http.ResponseWriter, r *http.Request, req gateway.GetRequest) {
	t := metering.From(r.Context())
	blk, err := s.gw.Open(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	defer blk.Close()
	t.Block = fmt.Sprintf("%s+%d", req.Locator.Hash, blk.Size)
	n, status := s.writeBlock(w, r, blk, req.Head)
	t.BytesOut, t.Status = n, status
	if status != http.StatusOK && status != http.StatusPartialContent {
		t.ErrorKind = blockstore.KindBadGateway.String()
		panic(http.ErrAbortHandler)
	}
}

// writeBlock sends an opened block: headers first, then the verified body.
// It returns the bytes sent and the status (502 when the body was cut
// short after the headers went out; the caller then aborts the response).
func (s *Server) writeBlock(w http.ResponseWriter, r *http.Request, blk *gateway.Block, head bool) (int64, int) {
	h := w.Header()
	h.Set("Content-Length", strconv.FormatInt(blk.Length, 10))
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Accept-Ranges", "bytes")
	if blk.Trusted() {
		// Relaying a store's chunk-by-chunk promise: a keepgate in front
		// of this one (an upstream storage) need not hash the bytes again.
		h.Set(keepwire.DataVerified, keepwire.VerifiedChunks)
	}
	status := http.StatusOK
	if blk.Partial {
		h.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", blk.Offset, blk.Offset+blk.Length-1, blk.Size))
		status = http.StatusPartialContent
	}
	w.WriteHeader(status)
	if head {
		return 0, status
	}
	n, err := s.copyBlock(w, r, blk)
	s.metrics.bytesOut.Add(float64(n))
	if err != nil {
		if k := blockstore.KindOf(err); k == blockstore.KindHashMismatch || k == blockstore.KindCorrupt {
			s.metrics.corrupt.Inc()
			s.log.Error("block data did not match its hash; response cut short", "request_id", httpserver.RequestIDFrom(r.Context()), "block", blk.Hash().String())
		} else {
			s.log.Warn("block response cut short", "request_id", httpserver.RequestIDFrom(r.Context()), "sent", n, "error", err.Error())
		}
		return n, http.StatusBadGateway
	}
	return n, status
}

// copyBlock sends the block's bytes: spliced from the store's connection
// when nothing needs to see them (gateway.Block.SpliceTo), copied through
// a budgeted 256 KiB buffer otherwise; paced by the key's rate cap either
// way.
func (s *Server) copyBlock(w http.ResponseWriter, r *http.Request, blk *gateway.Block) (int64, error) {
	pacer := metering.From(r.Context()).Out
	// Splicing needs the connection's ReadFrom behind w (every wrapper
	// on the way, httpsnoop's included, forwards it).
	pw := httpserver.NewProgressWriter(w, s.opt.BodyIdleTimeout)
	defer pw.Clear()
	if _, rf := w.(io.ReaderFrom); rf && blk.CanSplice(r.TLS != nil) {
		return blk.SpliceTo(w, func(want int64) (int64, error) {
			pw.Extend() // the segment must be taken within the idle timeout
			if pacer == nil {
				return want, nil
			}
			// A capped key: each segment paid for before it is sent, as
			// the copy path pays for each write.
			n, err := payAhead(r.Context(), pacer, int(want))
			return int64(n), err
		})
	}
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	// pw also hides the ResponseWriter's ReadFrom, which would copy in
	// 32 KiB pieces instead of our 256 KiB buffer.
	return io.CopyBuffer(pacedOutput(r.Context(), pw, pacer), blk, *buf)
}

func (s *Server) handlePut(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Via", "HTTP/1.1 keepproxy")
	req, body, release, err := s.resolvePut(w, r)
	defer release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.gw.Put(r.Context(), req)
	s.metrics.bytesIn.Add(float64(body.N))
	metering.From(r.Context()).BytesIn = body.N
	s.writePutResult(w, r, req, res, err)
}

// handlePost stores a body whose hash the client did not compute
// (resolvePost buffers and hashes it).
func (s *Server) handlePost(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Via", "HTTP/1.1 keepproxy")
	req, release, err := s.resolvePost(w, r)
	defer release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.gw.Put(r.Context(), req)
	s.writePutResult(w, r, req, res, err)
}

func (s *Server) writePutResult(w http.ResponseWriter, r *http.Request, req gateway.PutRequest, res gateway.PutResult, err error) {
	t := metering.From(r.Context())
	t.ReplicasStored = res.Replicas
	w.Header().Set(keepwire.ReplicasStored, strconv.Itoa(res.Replicas))
	if len(req.Classes) > 0 {
		confirmed := res.Classes
		if len(confirmed) == 0 && err == nil {
			confirmed = map[string]int{}
			for _, c := range req.Classes {
				confirmed[c] = res.Replicas
			}
		}
		t.ClassesConfirmed = confirmed
		w.Header().Set(keepwire.StorageClassesConfirmed, keepwire.FormatConfirmed(confirmed))
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.metrics.blocksPut.Inc()
	loc := res.Locator
	if loc == "" {
		loc = fmt.Sprintf("%s+%d", req.Hash, req.Size)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(loc)))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, loc)
}

// handleIndex merges the stores' indexes (admin scope): streamIndex.
func (s *Server) handleIndex(w http.ResponseWriter, r *http.Request) {
	req, release, err := s.resolveIndex(r)
	defer release()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.streamIndex(w, r, req)
}
