package config

import (
	"slices"
	"strings"

	"github.com/keepgate/keepgate/blockstore/keepwire"
)

// ProxyRule maps the names clients connect to (the Host header) to the
// storages reachable through them. Hosts are exact names or "*.suffix"
// wildcards (one label or more), matched lower-cased without port or
// trailing dot; an exact name wins over a wildcard, a longer wildcard over
// a shorter one.
type ProxyRule struct {
	// Name identifies the rule in logs and audit events (default: its
	// first host).
	Name  string   `mapstructure:"name"`
	Hosts []string `mapstructure:"hosts"`
	// Storages reachable through these names; DefaultStorage is the one
	// token-file and Arvados-API principals use here (default: the first).
	Storages       []string `mapstructure:"storages"`
	DefaultStorage string   `mapstructure:"default_storage"`
	// CORSOrigins: the browser origins granted CORS through these names
	// (e.g. https://upload.tenant-a.example.org); others get no CORS
	// grant. Empty: every origin, as without rules.
	CORSOrigins []string `mapstructure:"cors_origins"`
}

// validateRules checks rules and unknown_host once storages are known.
func (c *Keepproxy) validateRules(bad func(string, ...any)) {
	if len(c.Rules) == 0 {
		if c.UnknownHost != "" && c.UnknownHost != "reject" {
			bad("unknown_host %q: no rules are configured", c.UnknownHost)
		}
		return
	}
	storages := map[string]bool{}
	if len(c.Storages) == 0 {
		storages["default"] = true // the implicit storage of every store
	}
	for n := range c.Storages {
		storages[n] = true
	}
	claimed := map[string]string{}
	names := map[string]bool{}
	for i := range c.Rules {
		r := &c.Rules[i]
		if len(r.Hosts) == 0 {
			bad("rules[%d].hosts: list the names clients connect to (e.g. keep.tenant-a.example.org or *.keep.example.org)", i)
			continue
		}
		for j, h := range r.Hosts {
			n := keepwire.NormalizeHost(h)
			rest, wild := strings.CutPrefix(n, "*.")
			if n == "" || strings.Contains(rest, "*") || (wild && rest == "") {
				bad("rules[%d].hosts[%d] %q: a name, or a wildcard \"*.\" in front only (e.g. *.keep.example.org)", i, j, h)
				continue
			}
			if prev, ok := claimed[n]; ok {
				bad("rules[%d].hosts[%d] %q: already claimed by rule %s; one name belongs to one rule", i, j, h, prev)
			}
			r.Hosts[j] = n
			if r.Name == "" {
				r.Name = r.Hosts[0]
			}
			claimed[n] = r.Name
		}
		if names[r.Name] {
			bad("rules[%d].name %q: two rules have this name", i, r.Name)
		}
		names[r.Name] = true
		if len(r.Storages) == 0 {
			bad("rule %s: storages: list the storages reachable through its names", r.Name)
		}
		for _, s := range r.Storages {
			if !storages[s] {
				bad("rule %s: storage %q is not configured", r.Name, s)
			}
		}
		if r.DefaultStorage == "" && len(r.Storages) > 0 {
			r.DefaultStorage = r.Storages[0]
		}
		if r.DefaultStorage != "" && !slices.Contains(r.Storages, r.DefaultStorage) {
			bad("rule %s: default_storage %q is not one of its storages", r.Name, r.DefaultStorage)
		}
	}
	if c.UnknownHost == "" {
		c.UnknownHost = "reject"
	}
	if c.UnknownHost != "reject" && !names[c.UnknownHost] {
		bad("unknown_host %q: use reject (421 Misdirected Request) or the name of a rule", c.UnknownHost)
	}
}
