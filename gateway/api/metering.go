package gatewayapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/felixge/httpsnoop"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
)

// metered wraps a block route (PUT, POST, GET, HEAD, index): each request
// gets a metering.Transfer in its context, which the handler fills in
// (authorize adds the principal, fail the error kind), and which is
// recorded when the handler returns — also when it aborts the response.
func (s *Server) metered(op string, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := &metering.Transfer{Time: time.Now(), RequestID: httpserver.RequestIDFrom(r.Context()), ProxyID: s.opt.ProxyID,
			Host: keepwire.NormalizeHost(r.Host), Client: httpserver.ClientIP(r), UserAgent: r.UserAgent(), Op: op, Storage: placement.ImplicitStorage}
		if rule := ruleFrom(r.Context()); rule != nil {
			t.Rule = rule.Name
		}
		if t.Op == "" {
			t.Op = strings.ToLower(r.Method)
		}
		var mu sync.Mutex // the handler and the deferred record may race on an aborted write
		var status int
		var first time.Time
		seen := func(code int) {
			mu.Lock()
			if status == 0 {
				status, first = code, time.Now()
			}
			mu.Unlock()
		}
		w = httpsnoop.Wrap(w, httpsnoop.Hooks{
			WriteHeader: func(next httpsnoop.WriteHeaderFunc) httpsnoop.WriteHeaderFunc {
				return func(code int) { seen(code); next(code) }
			},
			Write: func(next httpsnoop.WriteFunc) httpsnoop.WriteFunc {
				return func(b []byte) (int, error) { seen(http.StatusOK); return next(b) }
			},
		})
		defer func() {
			mu.Lock()
			if t.Status == 0 { // a handler that cut a body short sets the real outcome
				t.Status = status
			}
			if t.Status == 0 {
				t.Status = http.StatusOK
			}
			if !first.IsZero() {
				t.TTFB = first.Sub(t.Time)
			}
			mu.Unlock()
			t.Duration = time.Since(t.Time)
			s.meter.Record(r.Context(), t)
		}()
		next(w, r.WithContext(metering.With(r.Context(), t)))
	})
}

// fail answers err and notes its kind on the request's transfer. The
// status is err's kind's (httpserver.WriteError, the one writer of error
// answers); a 416 names the block's size in "Content-Range: bytes */SIZE"
// (RFC 9110 §15.5.17).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	metering.From(r.Context()).ErrorKind = blockstore.KindOf(err).String()
	var re *gateway.RangeError
	if errors.As(err, &re) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", re.Size))
	}
	httpserver.WriteError(w, err)
}

// admit asks the meter whether the transfer of r may start; release is
// never nil.
func (s *Server) admit(r *http.Request) (func(), error) {
	return s.meter.Admit(r.Context(), metering.From(r.Context()))
}
