package config

import (
	"regexp"
	"sort"
	"strings"
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

// ProxyState is where access keys live. Path "" turns access keys and the
// admin API off.
type ProxyState struct {
	// Driver: sqlite (one keepproxy per file, never on a network
	// filesystem).
	Driver string `mapstructure:"driver"`
	// Path of the SQLite file, created on first start.
	Path string `mapstructure:"path"`
	// PepperFile holds the secret the access keys' secrets are hashed
	// with (HMAC-SHA256); it stays outside the database. Changing it
	// invalidates every secret.
	PepperFile string `mapstructure:"pepper_file"`
}

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
	if c.State.Path != "" {
		if c.State.Driver != "sqlite" {
			bad("state.driver %q: this version has sqlite", c.State.Driver)
		}
		if c.StoreWriteTokenFile == "" || c.BlobSigningKeyFile == "" {
			bad("state.path (access keys) needs store_write_token_file and blob_signing_key_file: keepproxy signs access keys' locators itself (for the key's uid, not its secret) and talks to the keepstores with the write token, so they never see a key's secret")
		}
		if c.State.PepperFile == "" {
			bad("state.pepper_file: required with state.path (the secret access-key secrets are hashed with; e.g. head -c 32 /dev/urandom | base64 > pepper, mode 0600)")
		}
	}
	if c.Admin.TokenFile != "" && c.State.Path == "" {
		bad("admin.token_file: the admin API manages access keys, which need state.path")
	}
}
