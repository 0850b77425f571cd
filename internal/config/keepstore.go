package config

import (
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// KeepstoreEnvPrefix is the prefix of keepstore's environment overrides:
// KEEPSTORE_LISTEN, KEEPSTORE_SIGNATURE_TTL, KEEPSTORE_VOLUMES (JSON), ...
const KeepstoreEnvPrefix = "KEEPSTORE"

// Keepstore is the configuration of one keepstore node. Keys are
// lower_snake_case; config/keepstore.example.yml documents each one.
type Keepstore struct {
	// ClusterID is the 5-character cluster prefix of generated volume
	// UUIDs ("zzzzz").
	ClusterID string `mapstructure:"cluster_id"`
	// Listen is host:port to listen on. Required: keepstore is LAN-only
	// and has no default address. An empty host, 0.0.0.0 or [::] (all
	// interfaces) is refused unless AllowAllInterfaces is set.
	Listen             string `mapstructure:"listen"`
	AllowAllInterfaces bool   `mapstructure:"allow_all_interfaces"`
	// AllowedNetworks: client addresses (CIDRs or single addresses)
	// allowed to talk to this node; others get 403. Empty means loopback,
	// the private ranges (10/8, 172.16/12, 192.168/16, fc00::/7) and
	// link-local. "0.0.0.0/0" and "::/0" allow everyone.
	AllowedNetworks []string `mapstructure:"allowed_networks"`
	// TrustedProxies: peers whose X-Forwarded-For / X-Real-Ip is believed
	// when working out the client address (for AllowedNetworks and logs).
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// AdminTokenFile holds the system root token that the admin endpoints
	// (index, mounts, trash, untrash, touch, delete) require. Without it
	// those endpoints refuse every request.
	AdminTokenFile string `mapstructure:"admin_token_file"`
	// ManagementTokenFile holds the token for /_health/ping, /metrics and
	// /status.json. Without it /_health/ping answers 404 and /metrics and
	// /status.json are open (to AllowedNetworks).
	ManagementTokenFile string `mapstructure:"management_token_file"`
	// BlobSigningKeyFile holds the cluster's blob signing key. With it,
	// PUT returns signed locators.
	BlobSigningKeyFile string `mapstructure:"blob_signing_key_file"`
	// WriteTokenFile holds the token that writes need: with it, PUT is
	// accepted only with "Authorization: Bearer <write token>" (or the
	// admin token); 401 without a token, 403 with another. keepproxy
	// sends it (its store_write_token_file). Without it anyone in
	// AllowedNetworks may write, as with Arvados' keepstore.
	WriteTokenFile string `mapstructure:"write_token_file"`
	// RequireSignatures: GET and HEAD need a valid +A signature. Default:
	// true when BlobSigningKeyFile is set, false otherwise.
	RequireSignatures *bool `mapstructure:"require_signatures"`
	// SignatureTTL is the lifetime of signatures made here and the
	// minimum age of a block before it may be trashed.
	SignatureTTL time.Duration `mapstructure:"signature_ttl"`
	// TrashEnabled: DELETE and PUT /trash trash blocks. When false they
	// answer 405.
	TrashEnabled       bool          `mapstructure:"trash_enabled"`
	TrashLifetime      time.Duration `mapstructure:"trash_lifetime"`
	TrashCheckInterval time.Duration `mapstructure:"trash_check_interval"`
	TrashConcurrency   int           `mapstructure:"trash_concurrency"`
	// MemoryBudget caps the copy buffers of all requests together; a
	// request that cannot get its buffer soon gets 503 + Retry-After.
	MemoryBudget ByteSize `mapstructure:"memory_budget"`
	// MaxConcurrentRequests caps requests being served at once (health
	// checks and metrics excepted); beyond it, 503 + Retry-After.
	MaxConcurrentRequests int `mapstructure:"max_concurrent_requests"`
	// BodyIdleTimeout: a PUT body that makes no progress for this long is
	// abandoned (408); a GET client that stops reading for this long is
	// cut off. Slow but steady clients are never cut off.
	BodyIdleTimeout time.Duration `mapstructure:"body_idle_timeout"`
	// ServerLimits: header size and count, connection caps (global and
	// per client address), idle and header timeouts of the listener.
	ServerLimits `mapstructure:",squash"`
	// LogLevel: debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
	// StorageClasses defines the classes volumes may name. Empty means one
	// class, "default", that every volume without classes belongs to.
	StorageClasses []StorageClass `mapstructure:"storage_classes"`
	// Volumes are the places blocks are stored. At least one.
	Volumes []Volume `mapstructure:"volumes"`
}

// StorageClass is one entry of Keepstore.StorageClasses.
type StorageClass struct {
	Name string `mapstructure:"name"`
	// Default: volumes that name no class belong to every default class.
	Default bool `mapstructure:"default"`
	// Priority: volumes of higher-priority classes are tried first.
	Priority int `mapstructure:"priority"`
}

// Volume is one entry of Keepstore.Volumes.
type Volume struct {
	// UUID is <cluster>-nyw5e-<15 lowercase alphanumerics>. When empty, a
	// stable one is derived from the driver and its location (the
	// directory root), so it survives restarts.
	UUID string `mapstructure:"uuid"`
	// Driver is "Directory" (more drivers come with their own section).
	Driver string `mapstructure:"driver"`
	// ReadOnly volumes are read, indexed and listed, never written,
	// touched, trashed or untrashed.
	ReadOnly bool `mapstructure:"read_only"`
	// Replication is how many copies the storage itself keeps (default 1).
	Replication int `mapstructure:"replication"`
	// StorageClasses the volume belongs to; empty means the default classes.
	StorageClasses []string `mapstructure:"storage_classes"`
	// Priority orders volumes for reads and writes (higher first). When
	// unset it is the highest priority among the volume's classes.
	Priority *int `mapstructure:"priority"`
	// Directory holds the parameters of the Directory driver.
	Directory DirectoryVolume `mapstructure:"directory"`
	// S3 holds the parameters of the S3 driver.
	S3 S3Volume `mapstructure:"s3"`
}

// S3Volume are the parameters of an S3 volume (any S3-compatible server:
// AWS S3, MinIO, Ceph RGW).
type S3Volume struct {
	// Endpoint is host[:port] of the S3 server, without a scheme.
	Endpoint string `mapstructure:"endpoint"`
	Region   string `mapstructure:"region"` // default us-east-1
	Bucket   string `mapstructure:"bucket"` // must exist
	// Prefix is prepended to every key ("keep/"); never change it on a
	// bucket that holds blocks.
	Prefix string `mapstructure:"prefix"`
	// AccessKeyFile / SecretKeyFile hold the credentials (mode 0600). When
	// both are empty, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are used,
	// else an IAM role, else anonymous requests.
	AccessKeyFile string `mapstructure:"access_key_file"`
	SecretKeyFile string `mapstructure:"secret_key_file"`
	// UseTLS talks https to the endpoint.
	UseTLS bool `mapstructure:"use_tls"`
	// PathStyle uses http://endpoint/bucket/key (MinIO, most self-hosted
	// servers); false uses virtual-host style http://bucket.endpoint/key.
	PathStyle bool `mapstructure:"path_style"`
	// Concurrency caps concurrent S3 requests of this volume (default 16).
	Concurrency int `mapstructure:"concurrency"`
	// Retries for throttling, 5xx and timeouts, with exponential back-off
	// (default 4).
	Retries int `mapstructure:"retries"`
	// RaceWindow guards trash against a concurrent write (default 24h).
	RaceWindow time.Duration `mapstructure:"race_window"`
}

// DirectoryVolume are the parameters of a Directory volume.
type DirectoryVolume struct {
	// Root is an existing directory (absolute path) that holds the blocks.
	Root string `mapstructure:"root"`
	// Reserve is free space kept in reserve: the volume reports full
	// (507) when a write would leave less than this. 0 means 64MiB; a
	// negative value disables the check.
	Reserve ByteSize `mapstructure:"reserve"`
	// Compress stores blocks compressed (zstd) when that saves space.
	Compress bool `mapstructure:"compress"`
}

// DefaultKeepstore returns the defaults of every key. Listen and Volumes
// have none: they must be configured.
func DefaultKeepstore() Keepstore {
	return Keepstore{
		ClusterID:             "zzzzz",
		SignatureTTL:          336 * time.Hour,
		TrashEnabled:          true,
		TrashLifetime:         336 * time.Hour,
		TrashCheckInterval:    24 * time.Hour,
		TrashConcurrency:      4,
		MemoryBudget:          256 << 20,
		MaxConcurrentRequests: 64,
		BodyIdleTimeout:       60 * time.Second,
		// On a LAN: no per-client cap (one keepproxy may hold many
		// connections), and keep-alive connections live longer than
		// keepproxy's 90 s pool of idle connections toward the stores,
		// so that the store is not the side that closes them.
		ServerLimits: ServerLimits{
			MaxHeaderBytes:          32 << 10,
			MaxHeaderFields:         100,
			MaxConnections:          4096,
			MaxConnectionsPerClient: 0,
			IdleTimeout:             2 * time.Minute,
			RequestHeaderTimeout:    10 * time.Second,
		},
		LogLevel:        "info",
		AllowedNetworks: []string{},
		TrustedProxies:  []string{},
		StorageClasses:  []StorageClass{},
		Volumes:         []Volume{},
	}
}

// LoadKeepstore reads a keepstore configuration: defaults, then the YAML
// file at path (optional when the environment says everything), then
// KEEPSTORE_* variables; then it validates and completes it (Validate).
func LoadKeepstore(path string) (*Keepstore, error) {
	c := DefaultKeepstore()
	if err := Load(path, KeepstoreEnvPrefix, &c); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		where := "config"
		if path != "" {
			where = "config " + path
		}
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &c, nil
}

var (
	clusterIDRe  = regexp.MustCompile(`^[a-z0-9]{5}$`)
	volumeUUIDRe = regexp.MustCompile(`^[a-z0-9]{5}-nyw5e-[a-z0-9]{15}$`)
	classNameRe  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
)

// DefaultAllowedNetworks is what an empty allowed_networks means.
var DefaultAllowedNetworks = []string{
	"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
	"169.254.0.0/16", "fc00::/7", "fe80::/10",
}

// Validate checks c and fills in what is derived: the require_signatures
// default, each volume's replication, classes, priority and UUID. It
// reports every problem it finds, one per line.
func (c *Keepstore) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !clusterIDRe.MatchString(c.ClusterID) {
		bad("cluster_id %q: want 5 lowercase letters or digits", c.ClusterID)
	}
	if err := checkListen(c.Listen, c.AllowAllInterfaces); err != nil {
		errs = append(errs, err)
	}
	if _, err := ParsePrefixes(c.AllowedNetworks); err != nil {
		bad("allowed_networks: %v", err)
	}
	if _, err := ParsePrefixes(c.TrustedProxies); err != nil {
		bad("trusted_proxies: %v", err)
	}
	if c.RequireSignatures == nil {
		v := c.BlobSigningKeyFile != ""
		c.RequireSignatures = &v
	}
	if *c.RequireSignatures && c.BlobSigningKeyFile == "" {
		bad("require_signatures is true but blob_signing_key_file is not set")
	}
	if c.SignatureTTL < time.Second || c.SignatureTTL%time.Second != 0 {
		bad("signature_ttl %v: want a whole number of seconds, at least 1s", c.SignatureTTL)
	}
	if c.TrashLifetime < 0 {
		bad("trash_lifetime %v: must not be negative", c.TrashLifetime)
	}
	if c.TrashCheckInterval <= 0 {
		bad("trash_check_interval %v: must be positive", c.TrashCheckInterval)
	}
	if c.TrashConcurrency < 1 {
		bad("trash_concurrency %d: must be at least 1", c.TrashConcurrency)
	}
	if c.MemoryBudget < 2<<20 {
		bad("memory_budget %v: must be at least 2MiB (one copy buffer and one checksum chunk)", c.MemoryBudget)
	}
	if c.MaxConcurrentRequests < 1 {
		bad("max_concurrent_requests %d: must be at least 1", c.MaxConcurrentRequests)
	}
	if c.BodyIdleTimeout <= 0 {
		bad("body_idle_timeout %v: must be positive", c.BodyIdleTimeout)
	}
	c.ServerLimits.validate(bad)
	switch strings.ToLower(c.LogLevel) {
	case "debug", "info", "warn", "error":
	default:
		bad("log_level %q: want debug, info, warn or error", c.LogLevel)
	}
	classPrio, defaults := c.checkClasses(bad)
	c.checkVolumes(classPrio, defaults, bad)
	return errors.Join(errs...)
}

func checkListen(listen string, allowAll bool) error {
	if listen == "" {
		return errors.New("listen is required (host:port on a LAN or loopback address, e.g. 10.0.0.5:25108); keepstore has no default address")
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("listen %q: %v", listen, err)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("listen %q: bad port", listen)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		if !allowAll {
			return fmt.Errorf("listen %q would listen on all interfaces; name one address, or set allow_all_interfaces: true", listen)
		}
	}
	return nil
}

// checkClasses validates the class definitions and returns each class's
// priority and the default classes.
func (c *Keepstore) checkClasses(bad func(string, ...any)) (map[string]int, []string) {
	prio := map[string]int{}
	var defaults []string
	if len(c.StorageClasses) == 0 {
		return map[string]int{"default": 0}, []string{"default"}
	}
	for i, sc := range c.StorageClasses {
		if !classNameRe.MatchString(sc.Name) {
			bad("storage_classes[%d]: name %q: want letters, digits, '_', '.', '-'", i, sc.Name)
			continue
		}
		if _, dup := prio[sc.Name]; dup {
			bad("storage_classes[%d]: class %q defined twice", i, sc.Name)
		}
		prio[sc.Name] = sc.Priority
		if sc.Default {
			defaults = append(defaults, sc.Name)
		}
	}
	if len(defaults) == 0 {
		bad("storage_classes: no class has default: true (volumes without classes need one)")
	}
	return prio, defaults
}

func (c *Keepstore) checkVolumes(classPrio map[string]int, defaults []string, bad func(string, ...any)) {
	if len(c.Volumes) == 0 {
		bad("volumes: at least one volume is required")
	}
	seenUUID := map[string]int{}
	seenRoot := map[string]int{}
	for i := range c.Volumes {
		v := &c.Volumes[i]
		where := fmt.Sprintf("volumes[%d]", i)
		var location string
		switch strings.ToLower(v.Driver) {
		case "directory":
			v.Driver = "Directory"
			root := v.Directory.Root
			if root == "" || !filepath.IsAbs(root) {
				bad("%s: directory.root %q: want an absolute path", where, root)
			} else {
				v.Directory.Root = filepath.Clean(root)
				if j, dup := seenRoot[v.Directory.Root]; dup {
					bad("%s: directory.root %s is also volumes[%d]'s", where, root, j)
				}
				seenRoot[v.Directory.Root] = i
			}
			location = "Directory:" + v.Directory.Root
		case "s3":
			v.Driver = "S3"
			if v.S3.Endpoint == "" || strings.Contains(v.S3.Endpoint, "://") {
				bad("%s: s3.endpoint %q: want host[:port] without a scheme (use s3.use_tls for https)", where, v.S3.Endpoint)
			}
			if v.S3.Bucket == "" {
				bad("%s: s3.bucket is required", where)
			}
			if (v.S3.AccessKeyFile == "") != (v.S3.SecretKeyFile == "") {
				bad("%s: set both s3.access_key_file and s3.secret_key_file, or neither", where)
			}
			if c.TrashLifetime > 0 && c.TrashLifetime < 24*time.Hour {
				bad("%s: with S3 volumes trash_lifetime must be 0 or at least 24h (eventual consistency can otherwise lose data)", where)
			}
			location = "S3:" + v.S3.Endpoint + "/" + v.S3.Bucket + "/" + v.S3.Prefix
		case "":
			bad("%s: driver is required (Directory or S3)", where)
		default:
			bad("%s: driver %q is not supported (supported: Directory, S3)", where, v.Driver)
		}
		if v.Replication == 0 {
			v.Replication = 1
		}
		if v.Replication < 1 {
			bad("%s: replication %d: must be at least 1", where, v.Replication)
		}
		if len(v.StorageClasses) == 0 {
			v.StorageClasses = append([]string(nil), defaults...)
		}
		maxPrio, first := 0, true
		for _, cl := range v.StorageClasses {
			p, ok := classPrio[cl]
			if !ok {
				bad("%s: storage class %q is not defined in storage_classes", where, cl)
				continue
			}
			if first || p > maxPrio {
				maxPrio, first = p, false
			}
		}
		if v.Priority == nil {
			v.Priority = &maxPrio
		}
		if v.UUID == "" && location != "" {
			v.UUID = volumeUUID(c.ClusterID, location)
		}
		if v.UUID != "" && !volumeUUIDRe.MatchString(v.UUID) {
			bad("%s: uuid %q: want <cluster>-nyw5e-<15 lowercase letters or digits>", where, v.UUID)
		}
		if j, dup := seenUUID[v.UUID]; dup && v.UUID != "" {
			bad("%s: uuid %s is also volumes[%d]'s", where, v.UUID, j)
		}
		seenUUID[v.UUID] = i
	}
}

// volumeUUID derives a stable volume UUID from where the volume lives.
func volumeUUID(cluster, location string) string {
	sum := md5.Sum([]byte(location))
	return cluster + "-nyw5e-" + hex.EncodeToString(sum[:])[:15]
}

// ParsePrefixes parses CIDRs or single addresses ("10.0.0.0/8",
// "192.168.1.7", "::1").
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a CIDR nor an address", s)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// AllowedPrefixes returns the parsed allowed_networks, or the default
// LAN ranges when it is empty. Call after Validate.
func (c *Keepstore) AllowedPrefixes() []netip.Prefix {
	list := c.AllowedNetworks
	if len(list) == 0 {
		list = DefaultAllowedNetworks
	}
	p, _ := ParsePrefixes(list)
	return p
}

// TrustedProxyPrefixes returns the parsed trusted_proxies. Call after Validate.
func (c *Keepstore) TrustedProxyPrefixes() []netip.Prefix {
	p, _ := ParsePrefixes(c.TrustedProxies)
	return p
}

// KeepstoreSecrets are the contents of the secret files.
type KeepstoreSecrets struct {
	AdminToken      string
	ManagementToken string
	BlobSigningKey  string
	WriteToken      string
}

// ReadSecrets reads the configured secret files (see ReadSecretFile).
// A signing key shorter than 32 characters is refused.
func (c *Keepstore) ReadSecrets() (KeepstoreSecrets, error) {
	var s KeepstoreSecrets
	var err error
	for _, f := range []struct {
		key, path string
		dst       *string
	}{
		{"admin_token_file", c.AdminTokenFile, &s.AdminToken},
		{"management_token_file", c.ManagementTokenFile, &s.ManagementToken},
		{"blob_signing_key_file", c.BlobSigningKeyFile, &s.BlobSigningKey},
		{"write_token_file", c.WriteTokenFile, &s.WriteToken},
	} {
		if f.path == "" {
			continue
		}
		if *f.dst, err = ReadSecretFile(f.path); err != nil {
			return s, fmt.Errorf("%s: %w", f.key, err)
		}
	}
	if s.BlobSigningKey != "" && len(s.BlobSigningKey) < 32 {
		return s, fmt.Errorf("blob_signing_key_file: the key has %d characters; use at least 32 (50 or more recommended)", len(s.BlobSigningKey))
	}
	return s, nil
}
