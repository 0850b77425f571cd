package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"
)

// KeepproxyEnvPrefix is the prefix of keepproxy's environment overrides:
// KEEPPROXY_LISTEN, KEEPPROXY_DEFAULT_REPLICAS, KEEPPROXY_STORES (JSON), ...
const KeepproxyEnvPrefix = "KEEPPROXY"

// Keepproxy is the configuration of the internet-facing gateway. Keys are
// lower_snake_case; config/keepproxy.example.yml documents each one.
type Keepproxy struct {
	// ClusterID prefixes the synthetic UUIDs of stores given only by URL.
	ClusterID string `mapstructure:"cluster_id"`
	// Listen is host:port. Default 127.0.0.1:25107 (behind nginx).
	Listen string `mapstructure:"listen"`
	// Stores are the keepstores blocks go to. Empty: discovered from the
	// API server's keep_services/accessible (api.host must be set).
	Stores []ProxyStore `mapstructure:"stores"`
	// DiscoveryInterval: how often discovered stores are refreshed.
	DiscoveryInterval time.Duration `mapstructure:"discovery_interval"`
	// DefaultReplicas when the client sends no X-Keep-Desired-Replicas.
	DefaultReplicas int `mapstructure:"default_replicas"`
	// TokenFile: YAML list of tokens with names and scopes (reloaded on
	// SIGHUP and when it changes).
	TokenFile string `mapstructure:"token_file"`
	// API: an Arvados-compatible API server for token validation and store
	// discovery. ARVADOS_API_HOST / ARVADOS_API_TOKEN /
	// ARVADOS_API_HOST_INSECURE fill these when they are not set.
	API ProxyAPI `mapstructure:"api"`
	// TokenCacheTTL: how long an accepted token is trusted without asking
	// again (a revoked token keeps working at most this long).
	TokenCacheTTL time.Duration `mapstructure:"token_cache_ttl"`
	// TokenCacheNegativeTTL: how long a rejection is remembered.
	TokenCacheNegativeTTL time.Duration `mapstructure:"token_cache_negative_ttl"`
	TokenCacheSize        int           `mapstructure:"token_cache_size"`
	// StoreAdminTokenFile: the keepstores' admin token, used for /index
	// on behalf of callers with the admin scope.
	StoreAdminTokenFile string `mapstructure:"store_admin_token_file"`
	// ManagementTokenFile guards /metrics and /_health/ping.
	ManagementTokenFile string `mapstructure:"management_token_file"`
	// MemoryBudget caps all request buffers together.
	MemoryBudget ByteSize `mapstructure:"memory_budget"`
	// ClientMemoryShare is the most of MemoryBudget one principal's
	// requests may hold together (0: a quarter of memory_budget).
	ClientMemoryShare ByteSize `mapstructure:"client_memory_share"`
	// StoreSlots caps GET/HEAD requests in flight toward the stores;
	// ClientStoreSlots is one principal's share of them (0: a quarter).
	StoreSlots       int `mapstructure:"store_slots"`
	ClientStoreSlots int `mapstructure:"client_store_slots"`
	// MinBodyRate: after BodyGrace, an upload averaging fewer bytes per
	// second than this is cut off with 408.
	MinBodyRate ByteSize      `mapstructure:"min_body_rate"`
	BodyGrace   time.Duration `mapstructure:"body_grace"`
	// PutWindow: how far the fastest store may run ahead of the slowest
	// during one PUT; also how long a failed store can still be replaced
	// by the next one from the start of the body.
	PutWindow ByteSize `mapstructure:"put_window"`
	// VerifyPuts: hash PUT bodies in the proxy too (the stores always do).
	VerifyPuts bool `mapstructure:"verify_puts"`
	// BodyIdleTimeout: a client body that makes no progress this long is
	// cut off (slow but steady uploads never are).
	BodyIdleTimeout time.Duration `mapstructure:"body_idle_timeout"`
	// UpstreamIdleTimeout: a store that stops reading for this long is
	// dropped from a PUT.
	UpstreamIdleTimeout time.Duration `mapstructure:"upstream_idle_timeout"`
	// ServerLimits: header size and count, connection caps (global and
	// per client address), idle and header timeouts of the listener.
	ServerLimits `mapstructure:",squash"`
	// TrustedProxies: peers (nginx) whose X-Forwarded-For is believed;
	// they are also exempt from max_connections_per_client.
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// StoreWriteTokenFile holds the keepstores' write token (their
	// write_token_file), sent to them on PUT instead of the caller's
	// token. The stores then sign locators for that token, so keepproxy
	// re-signs them for the caller with the key in BlobSigningKeyFile:
	// set both or neither.
	StoreWriteTokenFile string `mapstructure:"store_write_token_file"`
	// BlobSigningKeyFile holds the cluster's blob signing key (the
	// keepstores' blob_signing_key_file).
	BlobSigningKeyFile string `mapstructure:"blob_signing_key_file"`
	// SignatureTTL: lifetime of the signatures keepproxy makes (as the
	// keepstores' signature_ttl).
	SignatureTTL time.Duration `mapstructure:"signature_ttl"`
	// ProxyID names this keepproxy in audit events (default: host name).
	ProxyID string `mapstructure:"proxy_id"`
	// Audit: the transfer audit log.
	Audit Audit `mapstructure:"audit"`
	// Storages: named pools of keepstores that access keys are bound to;
	// DefaultStorage is the one token-file and API principals use. None:
	// one implicit storage of every store.
	Storages       map[string]ProxyStorage `mapstructure:"storages"`
	DefaultStorage string                  `mapstructure:"default_storage"`
	// Rules route by the name a client connected to (Host) to the
	// storages reachable through it; UnknownHost is "reject" (421) or the
	// name of the rule for other names. No rules: one implicit rule.
	Rules       []ProxyRule `mapstructure:"rules"`
	UnknownHost string      `mapstructure:"unknown_host"`
	// State holds the access keys; Admin is the API that manages them.
	State ProxyState `mapstructure:"state"`
	Admin ProxyAdmin `mapstructure:"admin"`
	// ArvadosAPI: the Arvados API slice for arv-put/arv-get (arvapi.go).
	ArvadosAPI ArvadosAPI `mapstructure:"arvados_api"`
	// Uploader serves the browser uploader at /_upload/.
	Uploader bool `mapstructure:"uploader"`
	// LogLevel: debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`

	// apiHostFromEnv: API.Host came from ARVADOS_API_HOST (see Sources).
	apiHostFromEnv bool
}

// UnixStoreScheme is the URL scheme of a keepstore reached through a unix
// socket (http+unix:///path/to/socket), e.g. a keeptunnel forward; the
// socket path is the URL's path.
const UnixStoreScheme = "http+unix"

// ProxyStore is one keepstore. URL is http://host:port, https://host:port
// or http+unix:///path/to/socket.
type ProxyStore struct {
	URL      string `mapstructure:"url"`
	UUID     string `mapstructure:"uuid"` // optional; default <cluster>-bi6l4-<md5(url as written)[:15]>
	ReadOnly bool   `mapstructure:"read_only"`
	// AsWritten is url exactly as configured (URL has trailing slashes
	// removed). The synthetic UUID hashes it, as Arvados hashes its
	// InternalURLs keys, so both agree on the probe order.
	AsWritten string `mapstructure:"-"`
}

// ProxyAPI is the Arvados-compatible API server.
type ProxyAPI struct {
	Host      string `mapstructure:"host"`       // host:port or URL
	Insecure  bool   `mapstructure:"insecure"`   // skip TLS verification (development only)
	TokenFile string `mapstructure:"token_file"` // token used for store discovery
}

// DefaultKeepproxy returns the defaults of every key.
func DefaultKeepproxy() Keepproxy {
	return Keepproxy{
		ClusterID:             "zzzzz",
		Listen:                "127.0.0.1:25107",
		Stores:                []ProxyStore{},
		DiscoveryInterval:     5 * time.Minute,
		DefaultReplicas:       2,
		TokenCacheTTL:         5 * time.Minute,
		TokenCacheNegativeTTL: 10 * time.Second,
		TokenCacheSize:        1000,
		MemoryBudget:          256 << 20,
		StoreSlots:            256,
		MinBodyRate:           16 << 10,
		BodyGrace:             30 * time.Second,
		PutWindow:             4 << 20,
		BodyIdleTimeout:       60 * time.Second,
		UpstreamIdleTimeout:   60 * time.Second,
		ServerLimits: ServerLimits{
			MaxHeaderBytes:          32 << 10,
			MaxHeaderFields:         100,
			MaxConnections:          4096,
			MaxConnectionsPerClient: 256,
			IdleTimeout:             30 * time.Second,
			RequestHeaderTimeout:    10 * time.Second,
		},
		TrustedProxies: []string{"127.0.0.1", "::1"},
		SignatureTTL:   336 * time.Hour,
		Audit:          DefaultAudit(),
		State:          ProxyState{Driver: "sqlite"},
		Admin:          ProxyAdmin{Listen: "127.0.0.1:25110"},
		Uploader:       true,
		LogLevel:       "info",
	}
}

// LoadKeepproxy reads defaults, the optional YAML file, KEEPPROXY_*
// variables and the ARVADOS_API_* variables, then validates.
func LoadKeepproxy(path string) (*Keepproxy, error) {
	c := DefaultKeepproxy()
	if err := Load(path, KeepproxyEnvPrefix, &c); err != nil {
		return nil, err
	}
	c.applyArvadosEnv()
	if err := c.Validate(); err != nil {
		where := "config"
		if path != "" {
			where = "config " + path
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &c, nil
}

// applyArvadosEnv supports the Arvados install guide's run script style.
func (c *Keepproxy) applyArvadosEnv() {
	if c.API.Host == "" {
		c.API.Host = os.Getenv("ARVADOS_API_HOST")
		c.apiHostFromEnv = c.API.Host != ""
	}
	if v := os.Getenv("ARVADOS_API_HOST_INSECURE"); v != "" && !c.API.Insecure {
		c.API.Insecure = v == "1" || strings.EqualFold(v, "true") || strings.EqualFold(v, "yes")
	}
}

// DiscoveryToken returns the token for store discovery: api.token_file,
// else ARVADOS_API_TOKEN.
func (c *Keepproxy) DiscoveryToken() (string, error) {
	if c.API.TokenFile != "" {
		return ReadSecretFile(c.API.TokenFile)
	}
	return os.Getenv("ARVADOS_API_TOKEN"), nil
}

// Validate checks c.
func (c *Keepproxy) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if !clusterIDRe.MatchString(c.ClusterID) {
		bad("cluster_id %q: must be 5 lowercase letters or digits", c.ClusterID)
	}
	if c.Listen == "" {
		bad("listen: required (e.g. 127.0.0.1:25107)")
	}
	c.addStorageStores(bad)
	c.validateRules(bad)
	if c.TokenFile == "" && c.API.Host == "" && !c.State.Enabled() {
		bad("no token source: set token_file, state.path or state.dsn_file (access keys), or api.host (or ARVADOS_API_HOST) to validate tokens against an API server")
	}
	if len(c.Stores) == 0 && c.API.Host == "" {
		bad("stores: list at least one keepstore URL, or set api.host (or ARVADOS_API_HOST) to discover them")
	}
	seen := map[string]bool{}
	for i := range c.Stores {
		s := &c.Stores[i]
		u, err := url.Parse(s.URL)
		if err == nil && u.Scheme == UnixStoreScheme {
			// A keepstore reached through a unix socket (a keeptunnel
			// forward): http+unix:///run/keepgate/tunnels/lab1/store.sock.
			if u.Host != "" || !strings.HasPrefix(u.Path, "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				bad("stores[%d].url %q: an http+unix URL is http+unix:// followed by the socket's absolute path, e.g. http+unix:///run/keepgate/tunnels/lab1/store.sock", i, s.URL)
				continue
			}
		} else if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("stores[%d].url %q: must be an http://, https:// or http+unix:// URL", i, s.URL)
			continue
		}
		s.AsWritten = s.URL
		s.URL = strings.TrimRight(s.URL, "/")
		if seen[s.URL] {
			bad("stores[%d].url %q: listed twice", i, s.URL)
		}
		seen[s.URL] = true
	}
	if c.DefaultReplicas < 1 {
		bad("default_replicas %d: must be at least 1", c.DefaultReplicas)
	}
	if c.MemoryBudget < 16<<20 {
		bad("memory_budget %s: must be at least 16MiB", c.MemoryBudget)
	}
	if c.PutWindow < 256<<10 || c.PutWindow > 64<<20 {
		bad("put_window %s: must be between 256KiB and 64MiB", c.PutWindow)
	}
	// A PUT holds put_window plus one 256 KiB chunk of the client's share.
	if c.ClientMemoryShare != 0 && (c.ClientMemoryShare < c.PutWindow+1<<20 || c.ClientMemoryShare > c.MemoryBudget) {
		bad("client_memory_share %s: must be 0 (a quarter of memory_budget) or between put_window + 1MiB (%s) and memory_budget (%s)", c.ClientMemoryShare, c.PutWindow+1<<20, c.MemoryBudget)
	}
	if c.StoreSlots < 1 {
		bad("store_slots %d: must be at least 1", c.StoreSlots)
	}
	if c.ClientStoreSlots < 0 || c.ClientStoreSlots > c.StoreSlots {
		bad("client_store_slots %d: must be 0 (a quarter of store_slots) or between 1 and store_slots (%d)", c.ClientStoreSlots, c.StoreSlots)
	}
	if c.MinBodyRate < 1 {
		bad("min_body_rate %s: must be positive (e.g. 16KiB, per second)", c.MinBodyRate)
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"token_cache_ttl", c.TokenCacheTTL}, {"body_idle_timeout", c.BodyIdleTimeout}, {"upstream_idle_timeout", c.UpstreamIdleTimeout}, {"body_grace", c.BodyGrace}} {
		if d.v <= 0 {
			bad("%s: must be positive", d.k)
		}
	}
	c.ServerLimits.validate(bad)
	c.Audit.validate(bad)
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		bad("trusted_proxies: %v", err)
	}
	if (c.StoreWriteTokenFile == "") != (c.BlobSigningKeyFile == "") {
		bad("store_write_token_file and blob_signing_key_file must be set together: the keepstores sign locators for the write token, and keepproxy re-signs them for the caller with the blob signing key")
	}
	if c.SignatureTTL < time.Second || c.SignatureTTL%time.Second != 0 {
		bad("signature_ttl %v: want a whole number of seconds, at least 1s", c.SignatureTTL)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level %q: use debug, info, warn or error", c.LogLevel)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}

// TrustedProxyPrefixes returns the parsed trusted_proxies.
func (c *Keepproxy) TrustedProxyPrefixes() []netip.Prefix {
	p, _ := ParsePrefixes(c.TrustedProxies)
	return p
}
