package gateway

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// Rule maps the names clients connect to (the Host header) to the storages
// reachable through them, the storage token-file and API principals use
// there, and the browser origins granted CORS.
type Rule struct {
	Name           string
	Hosts          []string // normalised (NormalizeHost); "*.suffix" wildcards
	Storages       []string
	DefaultStorage string
	CORSOrigins    []string // empty: every origin, as without rules
}

// ruleSet matches hosts: an exact name first, then the longest wildcard
// suffix, then the fallback (nil: 421).
type ruleSet struct {
	exact    map[string]*Rule
	wild     []wildRule // longest suffix first
	fallback *Rule
}

type wildRule struct {
	suffix string // ".keep.example.org"
	rule   *Rule
}

func newRuleSet(rules []Rule, unknownHost string) *ruleSet {
	s := &ruleSet{exact: map[string]*Rule{}}
	for i := range rules {
		r := &rules[i]
		for _, h := range r.Hosts {
			if suffix, ok := strings.CutPrefix(h, "*"); ok {
				s.wild = append(s.wild, wildRule{suffix, r})
			} else {
				s.exact[h] = r
			}
		}
		if r.Name == unknownHost {
			s.fallback = r
		}
	}
	sort.SliceStable(s.wild, func(i, j int) bool { return len(s.wild[i].suffix) > len(s.wild[j].suffix) })
	return s
}

func (s *ruleSet) match(host string) *Rule {
	if r, ok := s.exact[host]; ok {
		return r
	}
	for _, w := range s.wild {
		if strings.HasSuffix(host, w.suffix) && len(host) > len(w.suffix) {
			return w.rule
		}
	}
	return s.fallback
}

// SetRules replaces the forwarding rules (at start and on SIGHUP); requests
// in flight keep the rule they matched. No rules: one implicit rule (every
// name, the default storage, CORS for every origin).
func (g *Gateway) SetRules(rules []Rule, unknownHost string) {
	if len(rules) == 0 {
		g.rules.Store(nil)
		return
	}
	g.rules.Store(newRuleSet(append([]Rule(nil), rules...), unknownHost))
}

type ruleKey struct{}

func ruleFrom(ctx context.Context) *Rule {
	r, _ := ctx.Value(ruleKey{}).(*Rule)
	return r
}

// withRule matches the request's Host to a rule before anything else
// looks at the request (authentication included): an unknown name gets
// 421. Health checks and metrics are answered whatever the name (a
// balancer probes by address).
func (g *Gateway) withRule(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		set := g.rules.Load()
		if set == nil || strings.HasPrefix(r.URL.Path, "/_health/") || r.URL.Path == "/metrics" {
			next.ServeHTTP(w, r)
			return
		}
		host := keepwire.NormalizeHost(r.Host)
		rule := set.match(host)
		if rule == nil {
			httpserver.WriteError(w, blockstore.Errorf(blockstore.KindMisdirected, "Misdirected Request: this keepgate serves no rule for host %q", host))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ruleKey{}, rule)))
	})
}

// applyRule checks that the rule the request came through exposes the
// principal's storage, and gives token-file and API principals the rule's
// default storage. It returns the identity to use for the request.
func applyRule(r *http.Request, id *Identity) (*Identity, error) {
	rule := ruleFrom(r.Context())
	if rule == nil {
		return id, nil
	}
	st := id.Storage
	if st == "" {
		st = rule.DefaultStorage
	}
	if !slices.Contains(rule.Storages, st) {
		return nil, blockstore.Errorf(blockstore.KindForbidden, "host %s does not serve storage %s, the storage of this credential", keepwire.NormalizeHost(r.Host), st)
	}
	if id.Storage == "" {
		cp := *id
		cp.Storage = st
		id = &cp
	}
	return id, nil
}

// corsAllowed reports whether origin gets a CORS grant through the rule of
// r (every origin without rules or when the rule lists none).
func corsAllowed(r *http.Request, origin string) bool {
	rule := ruleFrom(r.Context())
	return rule == nil || len(rule.CORSOrigins) == 0 || slices.Contains(rule.CORSOrigins, origin)
}
