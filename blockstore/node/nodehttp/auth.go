package nodehttp

import (
	"crypto/subtle"
	"net/http"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// admin requires the admin (system root) token: 401 without a token, 403
// with another one, or with any when no admin token is configured.
func (a *api) admin(h http.HandlerFunc) http.Handler {
	return a.guard(h, func(r *http.Request) error {
		return checkToken(httpserver.Token(r, true), a.o.AdminToken, false)
	})
}

// management requires the management token when one is configured.
func (a *api) management(h http.HandlerFunc) http.Handler {
	return a.guard(h, func(r *http.Request) error {
		return checkToken(httpserver.Token(r, false), a.o.ManagementToken, true)
	})
}

// writer guards a write with the write token, when one is configured.
func (a *api) writer(h http.HandlerFunc) http.Handler {
	if a.o.WriteToken == "" {
		return h
	}
	return a.guard(h, func(r *http.Request) error {
		return checkWriteToken(httpserver.Token(r, false), a.o.WriteToken, a.o.AdminToken)
	})
}

// guard serves h only when check accepts the request, before its body is
// read; otherwise it fails with check's error.
func (a *api) guard(h http.HandlerFunc, check func(*http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := check(r); err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r)
	})
}

func checkToken(got, want string, openWhenUnset bool) error {
	switch {
	case want == "" && openWhenUnset:
		return nil
	case got == "":
		return blockstore.Errorf(blockstore.KindNoToken, "Unauthorized")
	case want == "":
		return blockstore.Errorf(blockstore.KindForbidden, "Forbidden: no admin token is configured on this keepstore")
	case subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1:
		return blockstore.Errorf(blockstore.KindForbidden, "Forbidden")
	}
	return nil
}

// checkHealth applies Arvados' rule for /_health/ping to the
// Authorization header auth: 404 when no management token is configured,
// 401 without the header, 403 unless it is "Bearer <token>".
func checkHealth(auth, tok string) error {
	switch {
	case tok == "":
		return blockstore.Errorf(blockstore.KindNotFound, "disabled")
	case auth == "":
		return blockstore.Errorf(blockstore.KindNoToken, "authorization required")
	case subtle.ConstantTimeCompare([]byte(auth), []byte("Bearer "+tok)) != 1:
		return blockstore.Errorf(blockstore.KindForbidden, "authorization error")
	}
	return nil
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

// vouchedSums returns, for a PUT that carries the write token itself and
// declares the keepwire.ChunkChecksums trailer, the function reading the
// sender's chunk checksums from the trailer once the body has ended
// (node.PutRequest.Vouched). Every other PUT — no write token configured,
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
