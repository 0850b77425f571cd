package config

import (
	"regexp"
	"sort"
	"strings"
	"time"
)

// ProxyStorage is one storage: a pool of keepstores (their URLs, each in
// one storage only), optionally narrowed to storage classes, with default
// and maximum replicas (0: the proxy's default_replicas; no maximum).
type ProxyStorage struct {
	Stores          []string `mapstructure:"stores"`
	Classes         []string `mapstructure:"classes"`
	DefaultReplicas int      `mapstructure:"default_replicas"`
	MaxReplicas     int      `mapstructure:"max_replicas"`
	// Upstream, instead of stores, makes the storage another Keep gateway
	// (a keepgate or an Arvados keepproxy), http(s)://host:port. Identity
	// is "squashed" (keepgate talks to it with the one service token in
	// TokenFile) or "individual" (each caller's token goes upstream).
	Upstream  string `mapstructure:"upstream"`
	Identity  string `mapstructure:"identity"`
	TokenFile string `mapstructure:"token_file"`
}

// ProxyState is where access keys, usage and heartbeats live. With
// neither Path (sqlite) nor DSNFile (postgres), access keys, usage reports
// and the admin API are off.
type ProxyState struct {
	// Driver: sqlite (one keepproxy per file, never on a network
	// filesystem) or postgres (several keepproxies on one database).
	Driver string `mapstructure:"driver"`
	// Path of the SQLite file, created on first start.
	Path string `mapstructure:"path"`
	// DSNFile holds the PostgreSQL connection string (it may carry the
	// password, so it is a secret file), e.g.
	// postgres://keepgate:PASSWORD@db.example:5432/keepgate?sslmode=verify-full
	DSNFile string `mapstructure:"dsn_file"`
	// PepperFile holds the secret the access keys' secrets are hashed
	// with (HMAC-SHA256); it stays outside the database. Changing it
	// invalidates every secret.
	PepperFile string `mapstructure:"pepper_file"`
	// KeyCacheTTL (postgres): how long a proxy trusts a cached access key
	// when a push of another proxy's change was lost; also how long cached
	// keys keep working while the database is unreachable. Default 30s.
	KeyCacheTTL time.Duration `mapstructure:"key_cache_ttl"`
	// UsageFlushInterval: usage counters are written every interval and
	// at shutdown (a crash loses at most one interval). Default 10s.
	UsageFlushInterval time.Duration `mapstructure:"usage_flush_interval"`
	// HeartbeatInterval: each proxy records itself as alive this often; a
	// proxy silent for three intervals no longer takes a share of rate
	// caps. Default 2s.
	HeartbeatInterval time.Duration `mapstructure:"heartbeat_interval"`
	// PinnedKeys: the balancer sends each key to one proxy (nginx hash
	// $http_authorization consistent), so every proxy applies a key's
	// whole rate cap; false (default): each takes cap ÷ live proxies.
	PinnedKeys bool `mapstructure:"pinned_keys"`
}

// Enabled reports whether a state database is configured.
func (s ProxyState) Enabled() bool { return s.Path != "" || s.DSNFile != "" }

// ProxyAdmin is the admin API's listener (access keys).
type ProxyAdmin struct {
	Listen    string `mapstructure:"listen"`     // default 127.0.0.1:25110
	TokenFile string `mapstructure:"token_file"` // "": the admin API is off
}

var storageNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// StorageNames returns the configured storages' names, sorted.
func (c *Keepproxy) StorageNames() []string {
	names := make([]string, 0, len(c.Storages))
	for n := range c.Storages {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// addStorageStores checks storages and default_storage, and lists every
// storage's stores among Stores (so they are validated and named once).
func (c *Keepproxy) addStorageStores(bad func(string, ...any)) {
	listed := map[string]bool{}
	for _, s := range c.Stores {
		listed[strings.TrimRight(s.URL, "/")] = true
	}
	owner := map[string]string{}
	for _, name := range c.StorageNames() {
		st := c.Storages[name]
		if !storageNameRe.MatchString(name) {
			bad("storages.%s: a storage name is 1-63 characters of a-z, 0-9, '.', '_' and '-'", name)
		}
		if st.Upstream != "" {
			validateUpstream(name, st, c, bad)
			continue
		}
		if len(st.Stores) == 0 {
			bad("storages.%s.stores: list the keepstores of this storage (or upstream: a Keep gateway's URL)", name)
		}
		for _, u := range st.Stores {
			key := strings.TrimRight(u, "/")
			if prev, ok := owner[key]; ok {
				bad("storages.%s.stores: %s is already in storage %s; a keepstore belongs to one storage only (two storages share no block)", name, u, prev)
				continue
			}
			owner[key] = name
			if !listed[key] {
				listed[key] = true
				c.Stores = append(c.Stores, ProxyStore{URL: u})
			}
		}
		if st.DefaultReplicas < 0 || st.MaxReplicas < 0 || (st.MaxReplicas > 0 && st.DefaultReplicas > st.MaxReplicas) {
			bad("storages.%s: default_replicas %d and max_replicas %d: want 0 ≤ default ≤ max (0: the proxy's default; no maximum)", name, st.DefaultReplicas, st.MaxReplicas)
		}
	}
	switch {
	case len(c.Storages) == 0 && c.DefaultStorage != "":
		bad("default_storage %q: no storages are configured", c.DefaultStorage)
	case len(c.Storages) == 1 && c.DefaultStorage == "":
		c.DefaultStorage = c.StorageNames()[0]
	case len(c.Storages) > 1 && c.DefaultStorage == "":
		bad("default_storage: required with several storages (the one token-file and API principals use): one of %s", strings.Join(c.StorageNames(), ", "))
	case len(c.Storages) > 0:
		if _, ok := c.Storages[c.DefaultStorage]; !ok {
			bad("default_storage %q: not a configured storage; configured: %s", c.DefaultStorage, strings.Join(c.StorageNames(), ", "))
		}
	}
	c.State.validate(bad)
	if c.State.Enabled() && (c.StoreWriteTokenFile == "" || c.BlobSigningKeyFile == "") {
		bad("state.path (access keys) needs store_write_token_file and blob_signing_key_file: keepproxy signs access keys' locators itself (for the key's uid, not its secret) and talks to the keepstores with the write token, so they never see a key's secret")
	}
	if c.Admin.TokenFile != "" && !c.State.Enabled() {
		bad("admin.token_file: the admin API manages access keys, which need state.path (sqlite) or state.dsn_file (postgres)")
	}
}

func (s *ProxyState) validate(bad func(string, ...any)) {
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
		key string
	}{{&s.KeyCacheTTL, 30 * time.Second, "key_cache_ttl"}, {&s.UsageFlushInterval, 10 * time.Second, "usage_flush_interval"},
		{&s.HeartbeatInterval, 2 * time.Second, "heartbeat_interval"}} {
		switch {
		case *d.v == 0:
			*d.v = d.def
		case *d.v < 100*time.Millisecond || *d.v > time.Hour:
			bad("state.%s %s: want between 100ms and 1h (0: %s)", d.key, *d.v, d.def)
		}
	}
	if !s.Enabled() {
		return
	}
	switch s.Driver {
	case "sqlite":
		if s.Path == "" || s.DSNFile != "" {
			bad("state: driver sqlite takes state.path (the SQLite file), not state.dsn_file")
		}
	case "postgres":
		if s.DSNFile == "" || s.Path != "" {
			bad("state: driver postgres takes state.dsn_file (a file holding the connection string), not state.path")
		}
	default:
		bad("state.driver %q: want sqlite (one keepproxy) or postgres (several keepproxies on one database)", s.Driver)
	}
	if s.PepperFile == "" {
		bad("state.pepper_file: required with a state database (the secret access-key secrets are hashed with; e.g. head -c 32 /dev/urandom | base64 > pepper, mode 0600)")
	}
}
