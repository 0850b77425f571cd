// Package admin is keepproxy's admin API, on a listener of its own
// (loopback by default) and guarded by its own admin token. Its paths and
// shapes follow Aspera's Node API /access_keys (README "Tenants and access
// keys"): create, list, show, update, revoke and rotate access keys. A
// secret is shown once, in the answer that created it; never in a list, a
// show, a log line, an error or a metric.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/state"
)

// Options configure the admin API.
type Options struct {
	Store   state.Store
	Hasher  access.Hasher
	Token   string   // the admin token (Basic admin:TOKEN or Bearer TOKEN)
	Cluster string   // prefix of generated key ids
	Storage []string // the storages keys may be bound to
	// Individual: storages whose callers' own tokens go upstream (no keys).
	Individual []string
	// Changed is called with a key's id after every change (the data
	// path's cache drops it, so the change counts from the next request).
	Changed func(id string)
	Logger  *slog.Logger
	Now     func() time.Time
}

// API is the admin HTTP API.
type API struct{ opt Options }

// New returns the API.
func New(opt Options) *API {
	if opt.Now == nil {
		opt.Now = time.Now
	}
	if opt.Changed == nil {
		opt.Changed = func(string) {}
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	return &API{opt: opt}
}

// maxBody is the largest request body accepted.
const maxBody = 64 << 10

// Handler returns the routes, behind the admin token check.
func (a *API) Handler() http.Handler {
	r := mux.NewRouter()
	r.HandleFunc("/access_keys", a.createKey).Methods(http.MethodPost)
	r.HandleFunc("/access_keys", a.listKeys).Methods(http.MethodGet)
	r.HandleFunc("/access_keys/{id}", a.showKey).Methods(http.MethodGet)
	r.HandleFunc("/access_keys/{id}", a.updateKey).Methods(http.MethodPatch)
	r.HandleFunc("/access_keys/{id}", a.revokeKey).Methods(http.MethodDelete)
	r.HandleFunc("/access_keys/{id}/secret", a.rotateSecret).Methods(http.MethodPost)
	r.HandleFunc("/usage", a.usage).Methods(http.MethodGet)
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeErr(w, errorf(http.StatusNotFound, "no such admin API path; see README \"Tenants and access keys\""))
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeErr(w, errorf(http.StatusMethodNotAllowed, "method not allowed on this path"))
	})
	return a.guard(r)
}

// guard requires the admin token and logs every call (never a body).
func (a *API) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Basic realm="keepgate-admin"`)
			writeErr(w, errorf(http.StatusUnauthorized, "send the admin token: curl -u admin:$ADMIN_TOKEN, or Authorization: Bearer $ADMIN_TOKEN"))
			a.opt.Logger.Warn("admin call refused: no or wrong admin token", "method", r.Method, "path", r.URL.Path, "client", r.RemoteAddr)
			return
		}
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		next.ServeHTTP(rec, r)
		a.opt.Logger.Info("admin call", "method", r.Method, "path", r.URL.Path, "status", rec.status, "client", r.RemoteAddr)
	})
}

func (a *API) authorized(r *http.Request) bool {
	if a.opt.Token == "" {
		return false
	}
	var got string
	if _, pw, ok := r.BasicAuth(); ok {
		got = pw // the user name is ignored (docs use "admin")
	} else if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		got = strings.TrimSpace(t)
	}
	return subtle.ConstantTimeCompare([]byte(got), []byte(a.opt.Token)) == 1
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// apiError is an answer other than success: a status and a message that
// says what to do.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, f string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(f, args...)}
}

// writeErr answers err as {"error": message}; errors that are not an
// apiError are internal (their text is logged by the caller, not shown).
func writeErr(w http.ResponseWriter, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = errorf(http.StatusInternalServerError, "internal error; see keepproxy's log")
	}
	writeJSON(w, ae.status, map[string]string{"error": ae.msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// decode reads one JSON object into v, strictly: unknown members (nested
// ones too), trailing data, malformed JSON and oversized bodies are
// refused with a message naming the problem.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return errorf(http.StatusRequestEntityTooLarge, "request body over %d KiB", maxBody>>10)
		case errors.Is(err, io.EOF):
			return errorf(http.StatusBadRequest, "empty body: send a JSON object")
		case errors.As(err, &se):
			return errorf(http.StatusBadRequest, "malformed JSON at byte %d: %v", se.Offset, err)
		case errors.As(err, &te):
			return errorf(http.StatusBadRequest, "JSON member %q: want %v", te.Field, te.Type)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			// encoding/json reports unknown members only in its message.
			return errorf(http.StatusBadRequest, "unknown JSON member %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		default:
			return errorf(http.StatusBadRequest, "malformed JSON: %v", err)
		}
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, "malformed JSON: data after the object")
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errorf(http.StatusBadRequest, "malformed JSON: data after the object")
	}
	return nil
}
