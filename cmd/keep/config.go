package main

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/keepgate/keepgate/blockstore"
)

// fileConfig is ~/.config/keep/config.yml. Every key is optional.
type fileConfig struct {
	Proxy    string `yaml:"proxy"`
	Token    string `yaml:"token"`
	Insecure bool   `yaml:"insecure"`
	Replicas int    `yaml:"replicas"`
	Threads  int    `yaml:"threads"`
	Retries  *int   `yaml:"retries"`
}

// settings are the resolved values a command runs with.
type settings struct {
	Proxy    string
	Token    string
	Insecure bool
	Replicas int
	Threads  int
	Retries  int // retries after the first attempt; 0 = none
	JSON     bool
	Quiet    bool
	Source   map[string]string // where each of proxy/token came from, for messages
}

// commonFlags are accepted by every subcommand.
type commonFlags struct {
	config   string
	proxy    string
	token    string
	insecure bool
	retries  int
	threads  int
	json     bool
	quiet    bool
}

func addCommon(fs *pflag.FlagSet, c *commonFlags, defThreads int) {
	fs.StringVar(&c.config, "config", "", "config file (default $XDG_CONFIG_HOME/keep/config.yml, or ~/.config/keep/config.yml)")
	fs.StringVar(&c.proxy, "proxy", "", "keepproxy URL (env KEEP_PROXY)")
	fs.StringVar(&c.token, "token", "", "API token (env KEEP_TOKEN; prefer the environment or the config file: flags show in ps)")
	fs.BoolVar(&c.insecure, "insecure", false, "do not verify the proxy's TLS certificate (self-signed development certificates only)")
	fs.IntVar(&c.retries, "retries", 5, "retries of a failed block request (network errors, 408, 429, 5xx except 507)")
	fs.IntVar(&c.threads, "threads", defThreads, "blocks transferred in parallel")
	fs.BoolVar(&c.json, "json", false, "print machine-readable JSON lines on stdout")
	fs.BoolVarP(&c.quiet, "quiet", "q", false, "no progress display")
}

// envBool accepts 1/true/yes/on.
func envBool(s string) (bool, bool) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on":
		return true, true
	case "0", "false", "no", "off":
		return false, true
	}
	return false, false
}

// defaultConfigPath is $XDG_CONFIG_HOME/keep/config.yml or
// ~/.config/keep/config.yml.
func defaultConfigPath(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "keep", "config.yml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "keep", "config.yml")
	}
	return ""
}

// resolve applies the precedence flags > environment (KEEP_*, then the
// Arvados variables) > config file > defaults. warn receives non-fatal
// notes (a config file others can read, plain http).
func resolve(fs *pflag.FlagSet, c *commonFlags, getenv func(string) string, warn func(string)) (*settings, error) {
	s := &settings{Threads: c.threads, Retries: c.retries, JSON: c.json, Quiet: c.quiet, Source: map[string]string{}}
	// Config file.
	var fc fileConfig
	path := c.config
	explicit := fs.Changed("config")
	if !explicit {
		if p := getenv("KEEP_CONFIG"); p != "" {
			path, explicit = p, true
		} else {
			path = defaultConfigPath(getenv)
		}
	}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := yaml.Unmarshal(b, &fc); err != nil {
				return nil, usageErr("config file %s: %v", path, err)
			}
			if fc.Token != "" {
				if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
					warn(fmt.Sprintf("config file %s holds a token and can be read by other users: chmod 600 %s", path, path))
				}
			}
		case os.IsNotExist(err) && !explicit:
		default:
			return nil, usageErr("config file: %v", err)
		}
	}
	pick := func(name, flagVal string, envs []string, fileVal string) string {
		if fs.Changed(name) {
			s.Source[name] = "--" + name
			return flagVal
		}
		for _, e := range envs {
			if v := strings.TrimSpace(getenv(e)); v != "" {
				s.Source[name] = e
				if e == "ARVADOS_KEEP_SERVICES" { // a space-separated list
					v = strings.Fields(v)[0]
				}
				return v
			}
		}
		if fileVal != "" {
			s.Source[name] = path
		}
		return fileVal
	}
	s.Proxy = pick("proxy", c.proxy, []string{"KEEP_PROXY", "ARVADOS_KEEP_SERVICES"}, fc.Proxy)
	s.Token = pick("token", c.token, []string{"KEEP_TOKEN", "ARVADOS_API_TOKEN"}, fc.Token)
	switch {
	case fs.Changed("insecure"):
		s.Insecure = c.insecure
	default:
		found := false
		for _, e := range []string{"KEEP_INSECURE", "ARVADOS_API_HOST_INSECURE"} {
			if v := getenv(e); v != "" {
				b, ok := envBool(v)
				if !ok {
					return nil, usageErr("%s=%q: want true or false", e, v)
				}
				s.Insecure, found = b, true
				break
			}
		}
		if !found {
			s.Insecure = fc.Insecure
		}
	}
	if !fs.Changed("threads") && fc.Threads > 0 {
		s.Threads = fc.Threads
	}
	if !fs.Changed("retries") && fc.Retries != nil {
		s.Retries = *fc.Retries
	}
	s.Replicas = fc.Replicas
	if s.Threads < 1 || s.Threads > 64 {
		return nil, usageErr("--threads must be between 1 and 64")
	}
	if s.Retries < 0 || s.Retries > 100 {
		return nil, usageErr("--retries must be between 0 and 100")
	}
	if s.Proxy == "" {
		return nil, usageErr("no proxy: set KEEP_PROXY, --proxy, or proxy: in %s", orDefault(path, "the config file"))
	}
	if s.Token == "" {
		return nil, usageErr("no token: set KEEP_TOKEN, or token: in %s", orDefault(path, "the config file"))
	}
	u, err := url.Parse(s.Proxy)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErr("proxy %q (from %s) is not an http:// or https:// URL", s.Proxy, s.Source["proxy"])
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		warn(fmt.Sprintf("sending the token over plain http to %s; use https:// outside a trusted network", u.Host))
	}
	return s, nil
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// exitError carries an exit code with a message.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

// Exit codes.
const (
	exitOK        = 0
	exitFailure   = 1   // the operation failed (network, refused, I/O)
	exitUsage     = 2   // bad arguments or configuration
	exitIntegrity = 3   // a block's bytes did not match its hash on every try
	exitInterrupt = 130 // SIGINT/SIGTERM
)

// exitCode maps an error to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if e, ok := err.(*exitError); ok {
		return e.code
	}
	switch blockstore.KindOf(err) {
	case blockstore.KindCorrupt, blockstore.KindHashMismatch:
		return exitIntegrity
	case blockstore.KindCanceled:
		return exitInterrupt
	}
	return exitFailure
}
