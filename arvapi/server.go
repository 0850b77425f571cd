package arvapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/state"
)

// Caller is an authenticated caller: its principal, the storage it uses
// and what that storage offers.
type Caller struct {
	Kind string // "access-key", "token-file", "api"
	ID   string // the principal's id (an access key's id, a token-file name), never a secret
	// Storage is the storage the principal's blocks and collections belong to.
	Storage string
	// Classes: the storage's classes (empty: any; the API then offers "default").
	Classes []string
	// DefaultReplicas: what a write without X-Keep-Desired-Replicas gets.
	DefaultReplicas int
	CanRead         bool
	CanWrite        bool
	Expires         time.Time // zero: never
	// Ref is the Keep implementation's own handle on the caller.
	Ref any
}

// Keep is what the API needs from the gateway. Contract:
//   - Authenticate resolves the request's credential; no credential or a
//     refused one is KindNoToken (401), a failure to decide keeps its kind
//     (e.g. KindUnavailable).
//   - Sign signs loc for c, expiring at now + TTL or notAfter if earlier
//     (zero: no bound).
//   - Verify checks loc's signature for c (the signer's kinds on failure).
//   - CheckBlock checks that loc's block is in c's storage, through the
//     same routing and isolation as a HEAD by c: KindNotFound when it is
//     not, other kinds when the stores could not tell.
type Keep interface {
	Authenticate(r *http.Request) (*Caller, error)
	Sign(c *Caller, loc blockstore.Locator, notAfter time.Time) blockstore.Locator
	Verify(c *Caller, loc blockstore.Locator) error
	CheckBlock(ctx context.Context, c *Caller, loc blockstore.Locator) error
}

// Options configure the API.
type Options struct {
	Keep        Keep                  // required
	Collections state.CollectionStore // required
	// UUIDPrefix is the cluster id of every UUID (5 [a-z0-9]); clients
	// treat a collection whose UUID starts otherwise as remote.
	UUIDPrefix string
	// SignatureTTL is the lifetime of the signatures the gateway makes
	// (blobSignatureTtl).
	SignatureTTL time.Duration
	// DefaultReplicas and DefaultClasses are what the discovery document
	// and the config tell callers whose storage is not known (no or a bad
	// token): the default storage's.
	DefaultReplicas int
	DefaultClasses  []string
	// MaxRequestSize bounds request bodies, and so manifest text (413
	// beyond; default 64 MiB, nginx's client_max_body_size).
	MaxRequestSize int64
	// TrashLifetime: how long a trashed collection stays retrievable with
	// include_trash before it is gone (default 336h, as Arvados).
	TrashLifetime time.Duration
	// CheckConcurrency: block presence checks in flight for one request
	// (default 8).
	CheckConcurrency int
	// TrustedProxies: peers (nginx) whose X-Forwarded-Proto is believed.
	TrustedProxies []netip.Prefix
	Logger         *slog.Logger
	Now            func() time.Time // default time.Now
}

// Server serves the API; it is an http.Handler.
type Server struct {
	opt Options
	mux *http.ServeMux
}

// New builds the API.
func New(opt Options) (*Server, error) {
	if opt.Keep == nil || opt.Collections == nil {
		return nil, fmt.Errorf("arvapi: Keep and Collections are required")
	}
	if !clusterRe.MatchString(opt.UUIDPrefix) {
		return nil, fmt.Errorf("arvapi: uuid prefix %q: want 5 characters of [a-z0-9]", opt.UUIDPrefix)
	}
	if opt.SignatureTTL <= 0 {
		opt.SignatureTTL = 336 * time.Hour
	}
	if opt.DefaultReplicas <= 0 {
		opt.DefaultReplicas = 2
	}
	if opt.MaxRequestSize <= 0 {
		opt.MaxRequestSize = 64 << 20
	}
	if opt.TrashLifetime <= 0 {
		opt.TrashLifetime = 336 * time.Hour
	}
	if opt.CheckConcurrency <= 0 {
		opt.CheckConcurrency = 8
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	s := &Server{opt: opt, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

// handlerFunc is an API call: it returns the answer (sent as JSON with
// 200) or an error (sent in Arvados' error shape).
type handlerFunc func(r *http.Request) (any, error)

// authedFunc is an API call for an authenticated caller.
type authedFunc func(r *http.Request, c *Caller) (any, error)

func (s *Server) routes() {
	get := []string{http.MethodGet} // also matches HEAD (answered without a body)
	s.handle(get, "/discovery/v1/apis/arvados/v1/rest", s.discovery)
	s.handle(get, "/arvados/v1/config", s.config)
	s.handle(get, "/arvados/v1/users/current", s.authed(needAny, s.currentUser))
	s.handle(get, "/arvados/v1/users/{uuid}", s.authed(needAny, s.getUser))
	s.handle(get, "/arvados/v1/api_client_authorizations/current", s.authed(needAny, s.currentAuthorization))
	s.handle(get, "/arvados/v1/groups/{uuid}", s.authed(needAny, s.getGroup))
	s.handle(get, "/arvados/v1/keep_services/accessible", s.authed(needAny, s.keepServices))
	s.handle(get, "/arvados/v1/collections", s.authed(needRead, s.listCollections))
	s.handle([]string{http.MethodPost}, "/arvados/v1/collections", s.authed(needWrite, s.createCollection))
	s.handle(get, "/arvados/v1/collections/{id}", s.authed(needRead, s.getCollection))
	s.handle([]string{http.MethodPut, http.MethodPatch}, "/arvados/v1/collections/{id}", s.authed(needWrite, s.updateCollection))
	s.handle([]string{http.MethodDelete}, "/arvados/v1/collections/{id}", s.authed(needWrite, s.deleteCollection))
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, notFound("API call not implemented by keepgate: %s %s (keepgate serves the part of the Arvados API that arv-put, arv-get, arv-ls and the SDKs use; see its README)", r.Method, truncate(r.URL.Path, 200)))
	})
}

func (s *Server) handle(methods []string, pattern string, h handlerFunc) {
	serve := func(w http.ResponseWriter, r *http.Request) {
		v, err := h(r)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v)
	}
	for _, m := range methods {
		s.mux.HandleFunc(m+" "+pattern, serve)
	}
}

type need int

const (
	needAny   need = iota // read or write: who the caller is, where Keep is
	needRead              // collections' content
	needWrite             // saving collections
)

// authed authenticates the caller and checks its scope before h.
func (s *Server) authed(n need, h authedFunc) handlerFunc {
	return func(r *http.Request) (any, error) {
		c, err := s.opt.Keep.Authenticate(r)
		if err != nil {
			return nil, err
		}
		if (n == needAny && !c.CanRead && !c.CanWrite) || (n == needRead && !c.CanRead) || (n == needWrite && !c.CanWrite) {
			what := "read"
			if n == needWrite {
				what = "write"
			}
			return nil, forbidden("Forbidden: %s %s may not %s (its scopes do not include %q)", c.Kind, c.ID, what, what)
		}
		return h(r, c)
	}
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Path values are matched on the escaped path and unescaped by the
	// mux (a PDH's "+" arrives as "%2B" from Python and as "+" from Go;
	// neither is ever a space).
	s.mux.ServeHTTP(w, r)
}

// now is the API's clock.
func (s *Server) now() time.Time { return s.opt.Now() }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// param is a request parameter: the query string, then a form body.
func param(r *http.Request, name string) string {
	if v := r.URL.Query().Get(name); v != "" {
		return v
	}
	if r.PostForm != nil {
		return r.PostForm.Get(name)
	}
	return ""
}

// boolParam reads a boolean parameter ("true"/"false", "1"/"0").
func boolParam(r *http.Request, name string) (bool, error) {
	switch strings.ToLower(param(r, name)) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, unprocessable("parameter %s: want true or false", name)
}
