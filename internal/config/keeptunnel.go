package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// KeeptunnelEnvPrefix is the prefix of keeptunnel's environment overrides:
// KEEPTUNNEL_SERVER, KEEPTUNNEL_KEEPALIVE_INTERVAL, KEEPTUNNEL_FORWARDS
// (JSON), ...
const KeeptunnelEnvPrefix = "KEEPTUNNEL"

// Keeptunnel is the configuration of the reverse-tunnel client that keeps
// a keepstore behind NAT reachable from keepproxy's side. Keys are
// lower_snake_case; config/keeptunnel.example.yml documents each one.
type Keeptunnel struct {
	// Server is the sshd on keepproxy's side, host or host:port (port 22
	// when omitted).
	Server string `mapstructure:"server"`
	// User is the tunnel account there (see deploy/sshd).
	User string `mapstructure:"user"`
	// IdentityFile is the private key (mode 0600, no passphrase).
	IdentityFile string `mapstructure:"identity_file"`
	// KnownHostsFile pins the server's host key (required).
	KnownHostsFile string `mapstructure:"known_hosts_file"`
	// Forwards: what the server listens on, and where its connections go.
	Forwards []TunnelForward `mapstructure:"forwards"`
	// KeepaliveInterval and KeepaliveCount: nothing heard from the server
	// for interval × count means the path is dead and is redialled.
	KeepaliveInterval time.Duration `mapstructure:"keepalive_interval"`
	KeepaliveCount    int           `mapstructure:"keepalive_count"`
	// ConnectTimeout bounds the TCP connect, HandshakeTimeout the SSH
	// handshake plus the forward requests, LocalDialTimeout the connect
	// to a local keepstore.
	ConnectTimeout   time.Duration `mapstructure:"connect_timeout"`
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout"`
	LocalDialTimeout time.Duration `mapstructure:"local_dial_timeout"`
	// Back-off between connection attempts: jittered, doubling from
	// BackoffMin to BackoffMax, starting over after a session that stayed
	// up BackoffReset. (Host key refusals are retried once a minute.)
	BackoffMin   time.Duration `mapstructure:"backoff_min"`
	BackoffMax   time.Duration `mapstructure:"backoff_max"`
	BackoffReset time.Duration `mapstructure:"backoff_reset"`
	// DrainTimeout: at SIGTERM, how long open connections may finish.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
	// HealthListen is a loopback host:port for /_health/ping and
	// /metrics; "" disables it.
	HealthListen string `mapstructure:"health_listen"`
	// LogLevel: debug, info, warn or error.
	LogLevel string `mapstructure:"log_level"`
}

// TunnelForward is one remote forward.
type TunnelForward struct {
	// Name labels the forward in logs and metrics; default: the socket's
	// file name without ".sock", or "tcp-PORT".
	Name string `mapstructure:"name"`
	// Remote is an absolute unix socket path on the server (recommended)
	// or a TCP host:port there.
	Remote string `mapstructure:"remote"`
	// Local is the keepstore's host:port on this side.
	Local string `mapstructure:"local"`
}

// KeeptunnelFlags are command-line overrides; empty fields leave the
// file's (or environment's) value. Forwards, when given, replace the list,
// each as REMOTE=LOCAL or NAME:REMOTE=LOCAL.
type KeeptunnelFlags struct {
	Server, User, IdentityFile, KnownHostsFile, HealthListen, LogLevel string
	Forwards                                                           []string
}

// DefaultKeeptunnel returns the defaults of every key.
func DefaultKeeptunnel() Keeptunnel {
	return Keeptunnel{
		User:              "kgtunnel",
		Forwards:          []TunnelForward{},
		KeepaliveInterval: 15 * time.Second,
		KeepaliveCount:    3,
		ConnectTimeout:    10 * time.Second,
		HandshakeTimeout:  15 * time.Second,
		LocalDialTimeout:  2 * time.Second,
		BackoffMin:        500 * time.Millisecond,
		BackoffMax:        30 * time.Second,
		BackoffReset:      time.Minute,
		DrainTimeout:      5 * time.Second,
		HealthListen:      "127.0.0.1:25120",
		LogLevel:          "info",
	}
}

// LoadKeeptunnel reads defaults, the optional YAML file, KEEPTUNNEL_*
// variables and then the flags, and validates.
func LoadKeeptunnel(path string, flags KeeptunnelFlags) (*Keeptunnel, error) {
	c := DefaultKeeptunnel()
	if err := Load(path, KeeptunnelEnvPrefix, &c); err != nil {
		return nil, err
	}
	where := "config"
	if path != "" {
		where = "config " + path
	}
	if err := c.applyFlags(flags); err != nil {
		return nil, fmt.Errorf("flags: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return &c, nil
}

func (c *Keeptunnel) applyFlags(f KeeptunnelFlags) error {
	for _, o := range []struct {
		dst *string
		v   string
	}{{&c.Server, f.Server}, {&c.User, f.User}, {&c.IdentityFile, f.IdentityFile}, {&c.KnownHostsFile, f.KnownHostsFile},
		{&c.HealthListen, f.HealthListen}, {&c.LogLevel, f.LogLevel}} {
		if o.v != "" {
			*o.dst = o.v
		}
	}
	if len(f.Forwards) == 0 {
		return nil
	}
	c.Forwards = nil
	for _, s := range f.Forwards {
		remote, local, ok := strings.Cut(s, "=")
		if !ok {
			return fmt.Errorf("-forward %q: want REMOTE=LOCAL, e.g. /run/keepgate/tunnels/lab1.sock=127.0.0.1:25108", s)
		}
		var name string
		if n, r, ok := strings.Cut(remote, ":"); ok && !strings.HasPrefix(remote, "/") && strings.HasPrefix(r, "/") {
			name, remote = n, r
		}
		c.Forwards = append(c.Forwards, TunnelForward{Name: name, Remote: remote, Local: local})
	}
	return nil
}

var forwardNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// maxSocketPath is the longest unix socket path Linux accepts (sun_path
// is 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Validate checks c and fills derived values (the server's default port,
// forward names).
func (c *Keeptunnel) Validate() error {
	var errs []string
	bad := func(f string, a ...any) { errs = append(errs, fmt.Sprintf(f, a...)) }
	if c.Server == "" {
		bad("server: required (the sshd on keepproxy's side, host or host:port)")
	} else if _, _, err := net.SplitHostPort(c.Server); err != nil {
		if strings.Contains(c.Server, ":") && !strings.HasPrefix(c.Server, "[") {
			bad("server %q: use host:port (an IPv6 address in brackets)", c.Server)
		} else {
			c.Server = net.JoinHostPort(strings.Trim(c.Server, "[]"), "22")
		}
	} else if !validPort(c.Server) {
		bad("server %q: port must be 1-65535", c.Server)
	}
	if c.User == "" {
		bad("user: required (the tunnel account on the server)")
	}
	if c.IdentityFile == "" {
		bad("identity_file: required (the private key, mode 0600)")
	}
	if c.KnownHostsFile == "" {
		bad("known_hosts_file: required: the server's host key must be pinned (ssh-keyscan the server, verify the fingerprint, save the line)")
	}
	if len(c.Forwards) == 0 {
		bad("forwards: list at least one {remote, local}")
	}
	names, remotes := map[string]bool{}, map[string]bool{}
	for i := range c.Forwards {
		f := &c.Forwards[i]
		switch {
		case strings.HasPrefix(f.Remote, "/"):
			if filepath.Clean(f.Remote) != f.Remote {
				bad("forwards[%d].remote %q: write the socket path in clean form (%s)", i, f.Remote, filepath.Clean(f.Remote))
			} else if len(f.Remote) > maxSocketPath {
				bad("forwards[%d].remote %q: a unix socket path may have at most %d bytes", i, f.Remote, maxSocketPath)
			}
			if f.Name == "" {
				f.Name = strings.TrimSuffix(filepath.Base(f.Remote), ".sock")
			}
		case validHostPort(f.Remote):
			if f.Name == "" {
				_, p, _ := net.SplitHostPort(f.Remote)
				f.Name = "tcp-" + p
			}
		default:
			bad("forwards[%d].remote %q: want an absolute unix socket path on the server (recommended) or host:port", i, f.Remote)
		}
		if !validHostPort(f.Local) {
			bad("forwards[%d].local %q: want the keepstore's host:port, e.g. 127.0.0.1:25108", i, f.Local)
		}
		if !forwardNameRe.MatchString(f.Name) {
			bad("forwards[%d].name %q: letters, digits, '_', '.', '-' only", i, f.Name)
		}
		if names[f.Name] {
			bad("forwards[%d].name %q: used twice", i, f.Name)
		}
		if remotes[f.Remote] {
			bad("forwards[%d].remote %q: listed twice", i, f.Remote)
		}
		names[f.Name], remotes[f.Remote] = true, true
	}
	if c.KeepaliveInterval < time.Second {
		bad("keepalive_interval %v: must be at least 1s", c.KeepaliveInterval)
	}
	if c.KeepaliveCount < 1 {
		bad("keepalive_count %d: must be at least 1", c.KeepaliveCount)
	}
	for _, d := range []struct {
		k string
		v time.Duration
	}{{"connect_timeout", c.ConnectTimeout}, {"handshake_timeout", c.HandshakeTimeout}, {"local_dial_timeout", c.LocalDialTimeout},
		{"backoff_min", c.BackoffMin}, {"backoff_reset", c.BackoffReset}, {"drain_timeout", c.DrainTimeout}} {
		if d.v <= 0 {
			bad("%s: must be positive", d.k)
		}
	}
	if c.BackoffMax < c.BackoffMin {
		bad("backoff_max %v: must not be below backoff_min %v", c.BackoffMax, c.BackoffMin)
	}
	if c.HealthListen != "" {
		host, _, err := net.SplitHostPort(c.HealthListen)
		ip, perr := netip.ParseAddr(host)
		if err != nil || !validPort(c.HealthListen) || (host != "localhost" && (perr != nil || !ip.IsLoopback())) {
			bad("health_listen %q: want a loopback host:port such as 127.0.0.1:25120 (or \"\" for none)", c.HealthListen)
		}
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

func validHostPort(s string) bool {
	host, _, err := net.SplitHostPort(s)
	return err == nil && host != "" && validPort(s)
}

func validPort(s string) bool {
	_, p, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535
}
