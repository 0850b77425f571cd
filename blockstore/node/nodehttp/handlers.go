package nodehttp

import (
	"context"
	"io"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// get serves GET and HEAD of a block, with Range support on GET.
func (a *api) get(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Vary", keepwire.Signature)
	req, err := readRequest(r)
	var rd *node.Reader
	if err == nil {
		rd, err = a.n.Open(r.Context(), req)
	}
	if err != nil {
		a.failRead(w, r, req, err)
		return
	}
	defer rd.Close()
	a.writeBlock(w, r, rd)
}

// put stores a block; the body is the signed locator.
func (a *api) put(w http.ResponseWriter, r *http.Request) {
	req, err := a.readPut(w, r)
	var res node.PutResult
	if err == nil {
		res, err = a.n.Put(r.Context(), req)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeStored(w, res, a.n.SignLocator(blockstore.Locator{Hash: req.Hash, Size: res.Size}, httpserver.Token(r, true)))
}

func (a *api) touch(w http.ResponseWriter, r *http.Request)   { a.blockOp(w, r, a.n.Touch) }
func (a *api) trash(w http.ResponseWriter, r *http.Request)   { a.blockOp(w, r, a.n.Trash) }
func (a *api) untrash(w http.ResponseWriter, r *http.Request) { a.blockOp(w, r, a.n.Untrash) }

func (a *api) blockOp(w http.ResponseWriter, r *http.Request, op func(ctx context.Context, h blockstore.Hash) error) {
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	if err == nil {
		err = op(r.Context(), loc.Hash)
	}
	if err != nil {
		a.fail(w, r, err)
	}
}

// index lists stored copies, "hash+size mtime_ns" per line, then a blank
// line; after an error that follows some output, the blank line is left
// out so that clients see the index is incomplete.
func (a *api) index(w http.ResponseWriter, r *http.Request) {
	mountUUID, prefix := indexScope(r)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	iw := newIndexWriter(w)
	err := a.n.Index(r.Context(), mountUUID, prefix, iw.add)
	if err != nil && !iw.started {
		a.fail(w, r, err)
		return
	}
	if err != nil {
		a.logFor(r.Context()).Warn("index cut short", "error", err.Error())
	}
	iw.finish(err == nil)
}

func (a *api) mounts(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.n.Mounts()) }
func (a *api) status(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.n.Status()) }

// scanStatus, startScan and stopScan serve the checksum scan: GET its
// status, POST to start one (query: mount=<uuid>, rate=<bytes per
// second>), DELETE to stop it; each answers the status as JSON.
func (a *api) scanStatus(w http.ResponseWriter, r *http.Request) { writeJSON(w, a.n.ChecksumScan()) }
func (a *api) stopScan(w http.ResponseWriter, r *http.Request)   { writeJSON(w, a.n.StopChecksumScan()) }

func (a *api) startScan(w http.ResponseWriter, r *http.Request) {
	mount, rate, err := readScan(r)
	var st node.ScanStatus
	if err == nil {
		st, err = a.n.StartChecksumScan(r.Context(), mount, rate)
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, st)
}

func (a *api) trashList(w http.ResponseWriter, r *http.Request) {
	items, err := readTrashList(w, r)
	if err == nil {
		err = a.n.SetTrashList(items)
	}
	if err != nil {
		a.fail(w, r, err)
	}
}

// health answers GET /_health/ping as Arvados does (KEEP-PROTOCOL §4).
func (a *api) health(w http.ResponseWriter, r *http.Request) {
	if err := checkHealth(r.Header.Get("Authorization"), a.o.ManagementToken); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"health":"OK"}`+"\n")
}
