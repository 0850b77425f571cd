package arvapi

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// errorBody is Arvados' error shape.
type errorBody struct {
	Errors     []string `json:"errors"`
	ErrorToken string   `json:"error_token"`
}

// writeError renders err in Arvados' JSON error shape, with the status of
// its blockstore Kind (the one status table) and Retry-After for overload.
func writeError(w http.ResponseWriter, err error) {
	k := blockstore.KindOf(err)
	if k == blockstore.KindOverloaded || k == blockstore.KindUnavailable {
		w.Header().Set("Retry-After", "2")
	}
	writeJSON(w, k.Status(), errorBody{Errors: []string{blockstore.Message(err)}, ErrorToken: errorToken()})
}

// errorToken is "<unix seconds>+<8 random hex digits>", as Arvados sends:
// it ties a client's report to the server's log line.
func errorToken() string {
	var b [4]byte
	rand.Read(b[:])
	return strconv.FormatInt(time.Now().Unix(), 10) + "+" + hex.EncodeToString(b[:])
}

// Errors of the API.
func notFound(format string, args ...any) error {
	return blockstore.Errorf(blockstore.KindNotFound, format, args...)
}

func unprocessable(format string, args ...any) error {
	return blockstore.Errorf(blockstore.KindUnprocessable, format, args...)
}

func forbidden(format string, args ...any) error {
	return blockstore.Errorf(blockstore.KindForbidden, format, args...)
}
