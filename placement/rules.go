package placement

import (
	"slices"
	"sort"
	"strings"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
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

// RuleSet matches hosts: an exact name first, then the longest wildcard
// suffix, then the fallback (none: no rule, which the gateway answers 421).
type RuleSet struct {
	exact    map[string]*Rule
	wild     []wildRule // longest suffix first
	fallback *Rule
}

type wildRule struct {
	suffix string // ".keep.example.org"
	rule   *Rule
}

// NewRuleSet indexes rules; unknownHost names the fallback rule for other
// names ("" or a name no rule has: none). It keeps pointers into rules.
func NewRuleSet(rules []Rule, unknownHost string) *RuleSet {
	s := &RuleSet{exact: map[string]*Rule{}}
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

// Match returns the rule for host (normalised: keepwire.NormalizeHost),
// nil when none applies.
func (s *RuleSet) Match(host string) *Rule {
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

// Resolve checks that the rule exposes the principal's storage (403
// naming host and storage when it does not) and gives token-file and API
// principals (no storage of their own) the rule's default storage. It
// returns the identity to use, a copy when it changed.
func (r *Rule) Resolve(id *access.Identity, host string) (*access.Identity, error) {
	st := id.Storage
	if st == "" {
		st = r.DefaultStorage
	}
	if !slices.Contains(r.Storages, st) {
		return nil, blockstore.Errorf(blockstore.KindForbidden, "host %s does not serve storage %s, the storage of this credential", host, st)
	}
	if id.Storage == "" {
		cp := *id
		cp.Storage = st
		id = &cp
	}
	return id, nil
}

// AllowsOrigin reports whether the rule grants CORS to origin (every
// origin when it lists none).
func (r *Rule) AllowsOrigin(origin string) bool {
	return len(r.CORSOrigins) == 0 || slices.Contains(r.CORSOrigins, origin)
}
