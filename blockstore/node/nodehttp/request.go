package nodehttp

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/gorilla/mux"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// maxTrashList bounds the body of PUT /trash.
const maxTrashList = 256 << 20

// readRequest parses a block read: the locator, the token and, for a GET
// of a block with a size hint, the Range header (blockRange).
func readRequest(r *http.Request) (node.ReadRequest, error) {
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	req := node.ReadRequest{Locator: loc, Token: httpserver.Token(r, true), Head: r.Method == http.MethodHead, N: -1}
	if err != nil || req.Head || loc.Size <= 0 {
		return req, err
	}
	req.Off, req.N, err = blockRange(r.Header.Get("Range"), loc.Size)
	return req, err
}

// blockRange interprets a Range header against a block of size > 0: one
// range "bytes=a-b", "bytes=a-" or "bytes=-n" (keepwire.ParseRange). A
// missing, malformed or multi-range header means the whole block (off 0,
// n -1); a range that starts at or past the end, or "bytes=-0", is
// KindBadRange (416).
func blockRange(h string, size int64) (off, n int64, err error) {
	br, perr := keepwire.ParseRange(h)
	switch {
	case perr == nil:
		return br.Resolve(size)
	case keepwire.IsZeroSuffix(h):
		return 0, 0, blockstore.Errorf(blockstore.KindBadRange, "requested range not satisfiable: %s of a %d-byte block", h, size)
	}
	return 0, -1, nil
}

// readPut parses a PUT: the hash (only the hash part of its locator must
// be valid), the size hint, the requested classes, the body (with its
// deadlines) and, from keepproxy, its vouched chunk checksums.
func (a *api) readPut(w http.ResponseWriter, r *http.Request) (node.PutRequest, error) {
	s := mux.Vars(r)["locator"]
	h, err := blockstore.ParseHash(first32(s))
	if err != nil {
		return node.PutRequest{}, err
	}
	return node.PutRequest{Hash: h, Size: r.ContentLength, SizeHint: putSizeHint(s),
		Body:    httpserver.ProgressBody(w, r, a.o.BodyIdleTimeout),
		Classes: httpserver.ParseClasses(r.Header.Get(keepwire.StorageClasses)),
		Vouched: a.vouchedSums(r, h)}, nil
}

// putSizeHint is the size hint of a PUT's locator, -1 if it has none or
// does not parse (only the hash of a PUT locator is required to be valid).
func putSizeHint(s string) int64 {
	loc, err := blockstore.ParseLocator(s)
	if err != nil {
		return -1
	}
	return loc.Size
}

// first32 returns the first 32 characters of s (all of s if shorter): a
// PUT uses only the hash part of its locator.
func first32(s string) string {
	if len(s) > 32 {
		return s[:32]
	}
	return s
}

// indexScope is the mount ("" for all) and hash prefix of an index
// request; a prefix query parameter wins over the path's.
func indexScope(r *http.Request) (mountUUID, prefix string) {
	v := mux.Vars(r)
	prefix = v["prefix"]
	if q := r.URL.Query(); q.Has("prefix") {
		prefix = q.Get("prefix")
	}
	return v["uuid"], prefix
}

// readScan parses POST /checksums: mount=<uuid> ("" for every writable
// mount) and rate=<bytes per second> (0 when absent: the default rate).
func readScan(r *http.Request) (mount string, rate int64, err error) {
	q := r.URL.Query()
	if v := q.Get("rate"); v != "" {
		if rate, err = strconv.ParseInt(v, 10, 64); err != nil || rate <= 0 {
			return "", 0, blockstore.Errorf(blockstore.KindBadRequest, "rate %q: want a positive number of bytes per second", truncate(v, 40))
		}
	}
	return q.Get("mount"), rate, nil
}

// readTrashList decodes the body of PUT /trash (at most maxTrashList bytes).
func readTrashList(w http.ResponseWriter, r *http.Request) ([]node.TrashItem, error) {
	var items []node.TrashItem
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxTrashList)).Decode(&items); err != nil {
		return nil, blockstore.Errorf(blockstore.KindBadRequest, "trash list: not a JSON array of {locator, block_mtime, mount_uuid}: %v", err)
	}
	return items, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
