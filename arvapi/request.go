package arvapi

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"

	"github.com/keepgate/keepgate/blockstore"
)

// attrs are the members of a collection record a client sent.
type attrs map[string]json.RawMessage

// readAttrs reads a create or update body, in any of the three shapes the
// clients send: flat JSON attributes (arv-put), {"collection": {…}} (other
// SDK callers), or a form with collection=<JSON text> (Go). A form body's
// other fields become parameters (param). A body over MaxRequestSize is
// KindTooLarge (413); malformed JSON is 422.
func (s *Server) readAttrs(r *http.Request) (attrs, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, s.opt.MaxRequestSize+1))
	if err != nil {
		return nil, blockstore.E("arvapi.readAttrs", blockstore.KindTimeout, "reading the request body failed", err)
	}
	if int64(len(body)) > s.opt.MaxRequestSize {
		return nil, blockstore.Errorf(blockstore.KindTooLarge, "request body over the limit of %d bytes (arvados_api.max_request_size): save fewer files in one collection", s.opt.MaxRequestSize)
	}
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "application/x-www-form-urlencoded" || ct == "multipart/form-data" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, unprocessable("malformed form body: %v", err)
		}
		r.PostForm = form
		if v, ok := form["collection"]; ok && len(v) > 0 {
			return decodeAttrs([]byte(v[0]), "collection")
		}
		return attrs{}, nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return attrs{}, nil
	}
	a, err := decodeAttrs(body, "request body")
	if err != nil {
		return nil, err
	}
	if inner, ok := a["collection"]; ok {
		var text string
		if json.Unmarshal(inner, &text) == nil {
			return decodeAttrs([]byte(text), "collection")
		}
		return decodeAttrs(inner, "collection")
	}
	return a, nil
}

func decodeAttrs(b []byte, what string) (attrs, error) {
	var a attrs
	if err := json.Unmarshal(b, &a); err != nil || a == nil {
		return nil, unprocessable("%s: want a JSON object of collection attributes", what)
	}
	return a, nil
}

// str reads a string member; null is "" (ok reports presence).
func (a attrs) str(name string) (string, bool, error) {
	raw, ok := a[name]
	if !ok {
		return "", false, nil
	}
	if string(raw) == "null" {
		return "", true, nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", true, unprocessable("%s: want a string or null", name)
	}
	return v, true, nil
}
