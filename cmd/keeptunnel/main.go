// Command keeptunnel keeps a keepstore behind NAT reachable from
// keepproxy's side through a supervised reverse SSH tunnel (package
// tunnel; README "Stores behind NAT").
//
//	keeptunnel -config /etc/keepgate/keeptunnel.yml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/tunnel"
)

const usage = `Usage: keeptunnel [-config FILE] [flags]

keeptunnel dials out to an sshd on keepproxy's side and has it listen on a
unix socket (or TCP port) per forward, carrying those connections to the
local keepstore(s). See config/keeptunnel.example.yml.

Flags (each overrides the file and KEEPTUNNEL_* variables):
  -config FILE          YAML configuration
  -server HOST[:PORT]   the sshd (port 22 when omitted)
  -user NAME            the tunnel account on the server
  -identity FILE        private key (mode 0600)
  -known-hosts FILE     pins the server's host key
  -forward REMOTE=LOCAL a forward, repeatable; replaces the file's list.
                        REMOTE is a socket path on the server (optionally
                        NAME:/path) or host:port; LOCAL the keepstore's host:port
  -health-listen ADDR   loopback host:port of /_health/ping and /metrics
  -log-level LEVEL      debug, info, warn, error
  -check                load and check the configuration and identity, then exit

Environment: KEEPTUNNEL_<KEY> overrides a key of the file (KEEPTUNNEL_SERVER,
KEEPTUNNEL_KEEPALIVE_INTERVAL, KEEPTUNNEL_FORWARDS as JSON); GOMAXPROCS,
GOMEMLIMIT, GOGC, GODEBUG as usual.

Signals: SIGTERM/SIGINT cancel the forwards, let open connections finish
(drain_timeout) and exit 0.
`

type forwardFlags []string

func (f *forwardFlags) String() string     { return strings.Join(*f, ",") }
func (f *forwardFlags) Set(v string) error { *f = append(*f, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "keeptunnel:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("keeptunnel", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	var fl config.KeeptunnelFlags
	var forwards forwardFlags
	cfgPath := fs.String("config", "", "YAML configuration file")
	fs.StringVar(&fl.Server, "server", "", "sshd host[:port]")
	fs.StringVar(&fl.User, "user", "", "tunnel account")
	fs.StringVar(&fl.IdentityFile, "identity", "", "private key file")
	fs.StringVar(&fl.KnownHostsFile, "known-hosts", "", "known_hosts file")
	fs.StringVar(&fl.HealthListen, "health-listen", "", "health and metrics address")
	fs.StringVar(&fl.LogLevel, "log-level", "", "log level")
	fs.Var(&forwards, "forward", "REMOTE=LOCAL (repeatable)")
	check := fs.Bool("check", false, "check the configuration and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	fl.Forwards = forwards
	cfg, err := config.LoadKeeptunnel(*cfgPath, fl)
	if err != nil {
		return err
	}
	signer, err := tunnel.LoadIdentity(cfg.IdentityFile)
	if err != nil {
		return err
	}
	if *check {
		fmt.Fprintf(os.Stderr, "keeptunnel: configuration OK: %s@%s, %d forward(s)\n", cfg.User, cfg.Server, len(cfg.Forwards))
		return nil
	}
	log := newLogger(cfg.LogLevel)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	opt := tunnel.Options{
		Server: cfg.Server, User: cfg.User, Signer: signer, KnownHostsFile: cfg.KnownHostsFile,
		KeepaliveInterval: cfg.KeepaliveInterval, KeepaliveCount: cfg.KeepaliveCount,
		ConnectTimeout: cfg.ConnectTimeout, HandshakeTimeout: cfg.HandshakeTimeout, LocalDialTimeout: cfg.LocalDialTimeout,
		BackoffMin: cfg.BackoffMin, BackoffMax: cfg.BackoffMax, BackoffReset: cfg.BackoffReset, DrainTimeout: cfg.DrainTimeout,
		Logger: log, Registry: reg,
	}
	for _, f := range cfg.Forwards {
		opt.Forwards = append(opt.Forwards, tunnel.Forward{Name: f.Name, Remote: f.Remote, Local: f.Local})
	}
	tun, err := tunnel.New(opt)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var srv *httpserver.Server
	if cfg.HealthListen != "" {
		ln, err := net.Listen("tcp", cfg.HealthListen)
		if err != nil {
			return fmt.Errorf("health_listen: %w", err)
		}
		srv, err = httpserver.NewServer(httpserver.Options{
			Handler: tun.Handler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{})), Logger: log, Registry: reg, Namespace: "keeptunnel",
			Limits: httpserver.Limits{MaxHeaderBytes: 8 << 10, MaxHeaderFields: 50, MaxConnections: 64, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 30 * time.Second},
		})
		if err != nil {
			return err
		}
		go srv.Serve(ln)
		log.Info("health and metrics", "address", ln.Addr().String())
	}
	log.Info("keeptunnel starting", "server", cfg.Server, "user", cfg.User, "forwards", len(cfg.Forwards),
		"keepalive", fmt.Sprintf("%v x %d", cfg.KeepaliveInterval, cfg.KeepaliveCount))
	err = tun.Run(ctx)
	if srv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		srv.Shutdown(sctx)
		cancel()
	}
	return err
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
