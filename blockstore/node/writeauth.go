package node

import (
	"crypto/subtle"
	"net/http"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// HTTPOptions are policies of the node's HTTP API (HandlerWith).
type HTTPOptions struct {
	// WriteToken, if set, is required to store blocks: PUT is accepted
	// only with "Authorization: Bearer <WriteToken>" (or the admin
	// token); 401 without a token, 403 with another one, before the body
	// is read. The locator is signed, as always, for the token the
	// request carried. Every other write already needs the admin token.
	// Empty: anyone in the allowed networks may write (as with Arvados).
	WriteToken string
}

// HandlerWith returns the node's HTTP API (see Handler) with o applied.
// Serve one handler per node: each has its own concurrent-request cap.
func (n *Node) HandlerWith(o HTTPOptions) http.Handler { return n.buildHandler(o) }

// writer guards a write with the write token, when one is configured.
func (a *api) writer(h http.HandlerFunc) http.Handler {
	if a.o.WriteToken == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := checkWriteToken(httpserver.Token(r, false), a.o.WriteToken, a.n.opt.AdminToken); err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r)
	})
}

// vouchedSums returns, for a PUT that carries the write token itself and
// declares the keepwire.ChunkChecksums trailer, the function reading the
// sender's chunk checksums from the trailer once the body has ended
// (PutRequest.Vouched). Every other PUT — no write token configured,
// another token (the admin token included), no trailer — gets nil and is
// MD5-verified.
func (a *api) vouchedSums(r *http.Request, h blockstore.Hash) func() (*blockstore.Checksums, error) {
	if a.o.WriteToken == "" {
		return nil
	}
	if _, declared := r.Trailer[keepwire.ChunkChecksums]; !declared {
		return nil
	}
	if subtle.ConstantTimeCompare([]byte(httpserver.Token(r, false)), []byte(a.o.WriteToken)) != 1 {
		return nil
	}
	return func() (*blockstore.Checksums, error) {
		v := r.Trailer.Get(keepwire.ChunkChecksums)
		if v == "" {
			return nil, blockstore.Errorf(blockstore.KindHashMismatch, "the %s trailer is missing", keepwire.ChunkChecksums)
		}
		return blockstore.ParseChecksumsText(v, h, -1)
	}
}

// checkWriteToken accepts got if it is the write token or the (non-empty)
// admin token, comparing in constant time.
func checkWriteToken(got, write, admin string) error {
	if got == "" {
		return blockstore.Errorf(blockstore.KindNoToken, "Unauthorized: this keepstore stores blocks only for its write token")
	}
	ok := subtle.ConstantTimeCompare([]byte(got), []byte(write))
	if admin != "" {
		ok |= subtle.ConstantTimeCompare([]byte(got), []byte(admin))
	}
	if ok != 1 {
		return blockstore.Errorf(blockstore.KindForbidden, "Forbidden: this keepstore stores blocks only for its write token")
	}
	return nil
}
