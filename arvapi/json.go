package arvapi

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// writeJSON sends v as the JSON body. No caching headers: Python caches
// the discovery document by HTTP freshness, and a stale rootUrl would
// outlive a change of name.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"errors":["internal error: the answer could not be encoded"],"error_token":"`+errorToken()+`"}`)
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(b)
}
