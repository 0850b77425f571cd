package gatewayapi

import (
	"context"
	"net/http"
	"strings"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/placement"
)

// SetRules replaces the forwarding rules (at start and on SIGHUP); requests
// in flight keep the rule they matched. No rules: one implicit rule (every
// name, the default storage, CORS for every origin).
func (s *Server) SetRules(rules []placement.Rule, unknownHost string) {
	if len(rules) == 0 {
		s.rules.Store(nil)
		return
	}
	s.rules.Store(placement.NewRuleSet(append([]placement.Rule(nil), rules...), unknownHost))
}

type ruleKey struct{}

func ruleFrom(ctx context.Context) *placement.Rule {
	r, _ := ctx.Value(ruleKey{}).(*placement.Rule)
	return r
}

// withRule matches the request's Host to a rule before anything else
// looks at the request (authentication included): an unknown name gets
// 421. Health checks and metrics are answered whatever the name (a
// balancer probes by address).
func (s *Server) withRule(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := s.rules.Load()
		if set == nil || strings.HasPrefix(r.URL.Path, "/_health/") || r.URL.Path == "/metrics" {
			next.ServeHTTP(w, r)
			return
		}
		host := keepwire.NormalizeHost(r.Host)
		rule := set.Match(host)
		if rule == nil {
			httpserver.WriteError(w, blockstore.Errorf(blockstore.KindMisdirected, "Misdirected Request: this keepgate serves no rule for host %q", host))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ruleKey{}, rule)))
	})
}

// applyRule checks that the rule the request came through exposes the
// principal's storage, and gives token-file and API principals the rule's
// default storage (placement.Rule.Resolve). It returns the identity to use
// for the request.
func applyRule(r *http.Request, id *access.Identity) (*access.Identity, error) {
	rule := ruleFrom(r.Context())
	if rule == nil {
		return id, nil
	}
	return rule.Resolve(id, keepwire.NormalizeHost(r.Host))
}

// corsAllowed reports whether origin gets a CORS grant through the rule of
// r (every origin without rules or when the rule lists none).
func corsAllowed(r *http.Request, origin string) bool {
	rule := ruleFrom(r.Context())
	return rule == nil || rule.AllowsOrigin(origin)
}
