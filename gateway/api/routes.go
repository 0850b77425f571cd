package gatewayapi

import (
	"crypto/subtle"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/felixge/httpsnoop"
	"github.com/gorilla/mux"
	"github.com/klauspost/compress/gzhttp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/cors"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// Handler returns the HTTP handler: request ids, real client address,
// access log, metrics, the forwarding rule, CORS, then the routes.
func (s *Server) Handler() http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true)
	r.UseEncodedPath()
	blockPath := "/{locator:[0-9a-f]{32}(?:\\+[^/]*)?}"
	r.Methods(http.MethodOptions).HandlerFunc(s.handleOptions)
	r.Path(blockPath).Methods(http.MethodGet, http.MethodHead).Handler(s.metered("", s.handleGet))
	r.Path(blockPath).Methods(http.MethodPut).Handler(s.metered("put", s.handlePut))
	r.Path("/").Methods(http.MethodPost).Handler(s.metered("post", s.handlePost))
	index := gzhttp.GzipHandler(s.metered("index", s.handleIndex))
	r.Path("/index").Methods(http.MethodGet).Handler(index)
	r.Path("/index/{prefix:[0-9a-f]{0,32}}").Methods(http.MethodGet).Handler(index)
	r.Path("/_health/{check}").Methods(http.MethodGet).HandlerFunc(s.handleHealth)
	r.Path("/metrics").Methods(http.MethodGet).Handler(s.guardManagement(promhttp.HandlerFor(s.opt.Registry, promhttp.HandlerOpts{})))
	if s.opt.UploaderFS != nil {
		r.PathPrefix("/_upload/").Methods(http.MethodGet, http.MethodHead).Handler(gzhttp.GzipHandler(http.StripPrefix("/_upload/", http.FileServer(s.opt.UploaderFS))))
		r.Path("/_upload").Handler(http.RedirectHandler("/_upload/", http.StatusMovedPermanently))
	}
	if s.opt.API != nil {
		r.PathPrefix("/arvados/v1/").Handler(s.opt.API)
		r.PathPrefix("/discovery/v1/").Handler(s.opt.API)
	}
	bad := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		httpserver.WriteError(w, blockstore.Errorf(blockstore.KindBadRequest, "Bad request: unknown path or method"))
	})
	r.NotFoundHandler, r.MethodNotAllowedHandler = bad, bad

	c := cors.New(cors.Options{
		AllowedOrigins:     []string{"*"},
		AllowedMethods:     strings.Split(keepwire.CORSAllowMethods, ", "),
		AllowedHeaders:     strings.Split(keepwire.CORSAllowHeaders, ", "),
		ExposedHeaders:     strings.Split(keepwire.CORSExposeHeaders, ", "),
		MaxAge:             keepwire.CORSMaxAgeSeconds,
		OptionsPassthrough: true, // our OPTIONS handler answers with the exact §7 values
		// A rule's cors_origins narrow the grant (staticCORS has the say).
		AllowOriginVaryRequestFunc: func(r *http.Request, origin string) (bool, []string) {
			return corsAllowed(r, origin), []string{"Origin"}
		},
	})
	var h http.Handler = c.Handler(staticCORS(r))
	h = s.withRule(h) // before CORS and authentication: 421 for unknown names
	h = s.countRequests(h)
	h = httpserver.WithAccessLog(s.log, h)
	h = httpserver.WithClientIP(s.opt.TrustedProxies, h)
	return httpserver.WithRequestID(h)
}

// staticCORS sets the §7 headers on every response, whether or not the
// request carried an Origin (Arvados clients and tests expect them always).
// Through a rule with cors_origins, only those origins get a grant (the
// origin echoed, Vary: Origin); other requests get no CORS header at all.
func staticCORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		if rule := ruleFrom(r.Context()); rule != nil && len(rule.CORSOrigins) > 0 {
			for _, k := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Methods", "Access-Control-Allow-Headers", "Access-Control-Expose-Headers", "Access-Control-Max-Age", "Access-Control-Allow-Credentials"} {
				h.Del(k)
			}
			h.Add("Vary", "Origin")
			origin := r.Header.Get("Origin")
			if origin == "" || !corsAllowed(r, origin) {
				next.ServeHTTP(w, r)
				return
			}
			h.Set("Access-Control-Allow-Origin", origin)
		} else {
			h.Set("Access-Control-Allow-Origin", "*")
		}
		h.Set("Access-Control-Allow-Methods", keepwire.CORSAllowMethods)
		h.Set("Access-Control-Allow-Headers", keepwire.CORSAllowHeaders)
		h.Set("Access-Control-Expose-Headers", keepwire.CORSExposeHeaders)
		h.Set("Access-Control-Max-Age", keepwire.CORSMaxAge)
		next.ServeHTTP(w, r)
	})
}

func (s *Server) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := httpsnoop.CaptureMetrics(next, w, r)
		s.metrics.requests.WithLabelValues(r.Method, strconv.Itoa(m.Code)).Inc()
	})
}

func (s *Server) handleOptions(w http.ResponseWriter, r *http.Request) {
	staticCORS(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	})).ServeHTTP(w, r)
}

// handleHealth answers /_health/ping per KEEP-PROTOCOL §4.
func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.checkHealthAuth(r); err != nil {
		httpserver.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{\"health\":\"OK\"}\n")
}

// checkHealthAuth is the health check's guard: the check must be "ping",
// and the management token must be set and sent.
func (s *Server) checkHealthAuth(r *http.Request) error {
	mt := s.opt.ManagementToken
	switch {
	case mux.Vars(r)["check"] != "ping":
		return blockstore.Errorf(blockstore.KindNotFound, "unknown health check")
	case mt == "":
		return blockstore.Errorf(blockstore.KindNotFound, "disabled")
	case r.Header.Get("Authorization") == "":
		return blockstore.Errorf(blockstore.KindNoToken, "authorization required")
	case subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), []byte("Bearer "+mt)) != 1:
		return blockstore.Errorf(blockstore.KindForbidden, "authorization error")
	}
	return nil
}

// guardManagement requires the management token when one is configured.
func (s *Server) guardManagement(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt := s.opt.ManagementToken; mt != "" {
			tok := httpserver.Token(r, false)
			if tok == "" {
				httpserver.WriteError(w, blockstore.Errorf(blockstore.KindNoToken, "Unauthorized: send the management token"))
				return
			}
			if subtle.ConstantTimeCompare([]byte(tok), []byte(mt)) != 1 {
				httpserver.WriteError(w, blockstore.Errorf(blockstore.KindForbidden, "Forbidden"))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
