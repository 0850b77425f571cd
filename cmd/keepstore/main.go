// Command keepstore is keepgate's LAN-only block node: it stores Keep
// blocks on its volumes and serves them with the keepstore API of
// KEEP-PROTOCOL §5 (plus Range reads, /status.json and /metrics).
//
//	keepstore -config /etc/keepgate/keepstore.yml
//
// Every setting can also come from KEEPSTORE_* environment variables (see
// config/keepstore.example.yml). Logs are JSON lines on stderr.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/dirvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/node/nodehttp"
	"github.com/keepgate/keepgate/blockstore/s3volume"
	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// shutdownGrace is how long in-flight requests get after SIGTERM before
// their connections are closed; the process exits within 5 s.
const shutdownGrace = 4 * time.Second

const usage = `Usage: keepstore -config FILE

keepstore is keepgate's LAN-only Keep block node.

Options:
  -config FILE   YAML configuration (annotated example: config/keepstore.example.yml).
                 Required unless every setting comes from the environment.
  -version       print the version and exit
  -h             this help

Environment (every variable keepstore reads):
  KEEPSTORE_<KEY>   overrides a key of the file; nested keys joined with "_",
                    lists comma-separated, lists of structures as JSON, e.g.
                    KEEPSTORE_LISTEN=10.0.0.5:25108, KEEPSTORE_SIGNATURE_TTL=336h,
                    KEEPSTORE_MEMORY_BUDGET=512MiB,
                    KEEPSTORE_ALLOWED_NETWORKS=10.0.0.0/8,127.0.0.1,
                    KEEPSTORE_WRITE_TOKEN_FILE=/etc/keepgate/keepstore-write-token,
                    KEEPSTORE_VOLUMES='[{"driver":"Directory","directory":{"root":"/srv/keep0"}}]'.
                    With no -config, at least one KEEPSTORE_* variable is required.
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY  S3 credentials of volumes without
                    s3.access_key_file / s3.secret_key_file; without them too,
                    an IAM role (minio-go's IAM provider reads the usual
                    AWS_CONTAINER_CREDENTIALS_*, AWS_WEB_IDENTITY_TOKEN_FILE,
                    AWS_ROLE_ARN variables).
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY  used by S3 volumes' requests.
  GOMEMLIMIT, GOGC, GOMAXPROCS, GODEBUG  Go runtime settings.

Signals: SIGTERM/SIGINT shut down gracefully (within 5 s); SIGHUP is logged
and otherwise ignored (restart to apply a new configuration).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("keepstore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "", "YAML configuration file")
	showVersion := fs.Bool("version", false, "print the version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Fprintln(stderr, "keepstore", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "keepstore: unexpected argument %q\n\n%s", fs.Arg(0), usage)
		return 2
	}
	if *cfgPath == "" && !haveEnvConfig() {
		fmt.Fprintf(stderr, "keepstore: -config FILE is required (or KEEPSTORE_* environment variables)\n\n%s", usage)
		return 2
	}
	if err := serve(*cfgPath, stderr); err != nil {
		fmt.Fprintln(stderr, "keepstore:", err)
		return 1
	}
	return 0
}

func haveEnvConfig() bool {
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, config.KeepstoreEnvPrefix+"_") {
			return true
		}
	}
	return false
}

// serve runs keepstore until SIGTERM or SIGINT.
func serve(cfgPath string, stderr io.Writer) error {
	cfg, err := config.LoadKeepstore(cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel)
	secrets, err := cfg.ReadSecrets()
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mounts, closeVolumes, err := openVolumes(cfg, log, reg)
	if err != nil {
		return err
	}
	defer closeVolumes()

	var signer *blockstore.Signer
	if secrets.BlobSigningKey != "" {
		signer = &blockstore.Signer{Key: []byte(secrets.BlobSigningKey), TTL: cfg.SignatureTTL}
	}
	n, err := node.New(node.Options{
		Mounts:                mounts,
		Signer:                signer,
		RequireSignatures:     *cfg.RequireSignatures,
		SignatureTTL:          cfg.SignatureTTL,
		TrashEnabled:          cfg.TrashEnabled,
		TrashCheckInterval:    cfg.TrashCheckInterval,
		TrashConcurrency:      cfg.TrashConcurrency,
		MemoryBudget:          int64(cfg.MemoryBudget),
		MaxConcurrentRequests: cfg.MaxConcurrentRequests,
		Logger:                log,
		Registry:              reg,
		Version:               version,
	})
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	srv, err := httpserver.NewServer(httpserver.Options{
		Handler: nodehttp.New(n, nodehttp.Options{WriteToken: secrets.WriteToken, AdminToken: secrets.AdminToken,
			ManagementToken: secrets.ManagementToken, BodyIdleTimeout: cfg.BodyIdleTimeout,
			AllowedNetworks: cfg.AllowedPrefixes(), TrustedProxies: cfg.TrustedProxyPrefixes()}),
		Logger:    log,
		Registry:  reg,
		Namespace: "keepstore",
		Limits: httpserver.Limits{MaxHeaderBytes: int(cfg.MaxHeaderBytes), MaxHeaderFields: cfg.MaxHeaderFields,
			MaxConnections: cfg.MaxConnections, MaxConnectionsPerClient: cfg.MaxConnectionsPerClient,
			Exempt: cfg.TrustedProxyPrefixes(), ReadHeaderTimeout: cfg.RequestHeaderTimeout, IdleTimeout: cfg.IdleTimeout},
	})
	if err != nil {
		ln.Close()
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	bgCtx, stopBackground := context.WithCancel(context.Background())
	bgDone := make(chan struct{})
	go func() { n.Run(bgCtx); close(bgDone) }()
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()

	logStartup(log, cfg, secrets, ln.Addr().String(), srv.Limits())
	var result error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			log.Info("SIGHUP received: keepstore reloads nothing; restart it to apply a new configuration")
		case err := <-serveErr:
			result = fmt.Errorf("serving %s: %w", cfg.Listen, err)
			break loop
		}
	}
	log.Info("shutting down", "grace_seconds", shutdownGrace.Seconds())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("requests still running at the shutdown deadline; closing their connections", "error", err.Error())
		srv.Close()
	}
	cancel()
	stopBackground()
	<-bgDone
	if result == nil || errors.Is(result, http.ErrServerClosed) {
		log.Info("stopped")
		return nil
	}
	return result
}

// openVolumes opens every configured volume and returns the node's mounts
// and a function closing them all.
func openVolumes(cfg *config.Keepstore, log *slog.Logger, reg prometheus.Registerer) ([]node.Mount, func(), error) {
	var mounts []node.Mount
	var closers []func() error
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	policy := blockstore.TrashPolicy{MinAge: cfg.SignatureTTL, Lifetime: cfg.TrashLifetime}
	for i, vc := range cfg.Volumes {
		var vol blockstore.Volume
		switch vc.Driver {
		case "Directory":
			v, err := dirvolume.New(dirvolume.Config{Root: vc.Directory.Root, Reserve: int64(vc.Directory.Reserve),
				Compress: vc.Directory.Compress, Policy: policy, Logger: log.With("mount", vc.UUID)})
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("volumes[%d] (%s): %w", i, vc.UUID, err)
			}
			vol, closers = v, append(closers, v.Close)
		case "S3":
			v, err := openS3(cfg, vc, policy, log, reg)
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("volumes[%d] (%s): %w", i, vc.UUID, err)
			}
			vol = v
		default:
			closeAll()
			return nil, nil, fmt.Errorf("volumes[%d]: driver %q is not supported", i, vc.Driver)
		}
		mounts = append(mounts, node.Mount{UUID: vc.UUID, Volume: vol, ReadOnly: vc.ReadOnly,
			Replication: vc.Replication, Classes: vc.StorageClasses, Priority: *vc.Priority,
			VerifyFirst: vc.Driver == "Directory"})
	}
	return mounts, closeAll, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// logStartup describes the running configuration, without any secret.
func logStartup(log *slog.Logger, cfg *config.Keepstore, s config.KeepstoreSecrets, addr string, lim httpserver.Limits) {
	for _, v := range cfg.Volumes {
		log.Info("volume", "uuid", v.UUID, "driver", v.Driver, "root", v.Directory.Root, "read_only", v.ReadOnly,
			"replication", v.Replication, "storage_classes", v.StorageClasses, "priority", *v.Priority)
	}
	nets := cfg.AllowedNetworks
	if len(nets) == 0 {
		nets = config.DefaultAllowedNetworks
	}
	log.Info("keepstore listening", "version", version, "address", addr, "allowed_networks", nets,
		"signing", s.BlobSigningKey != "", "require_signatures", *cfg.RequireSignatures,
		"admin_token", s.AdminToken != "", "management_token", s.ManagementToken != "", "write_token", s.WriteToken != "",
		"memory_budget", int64(cfg.MemoryBudget), "trash_enabled", cfg.TrashEnabled,
		"max_header_bytes", lim.MaxHeaderBytes, "max_header_fields", lim.MaxHeaderFields, "max_connections", lim.MaxConnections,
		"max_connections_per_client", lim.MaxConnectionsPerClient, "idle_timeout", lim.IdleTimeout.String())
	if s.WriteToken == "" {
		log.Warn("no write_token_file: every client in allowed_networks may store blocks (a web page open in a browser on the LAN too)")
	}
}

// openS3 opens an S3 volume; credentials come from the configured files,
// else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else IAM or anonymous.
func openS3(cfg *config.Keepstore, vc config.Volume, policy blockstore.TrashPolicy, log *slog.Logger, reg prometheus.Registerer) (*s3volume.Volume, error) {
	c := vc.S3
	access, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if c.AccessKeyFile != "" {
		var err error
		if access, err = config.ReadSecretFile(c.AccessKeyFile); err != nil {
			return nil, fmt.Errorf("s3.access_key_file: %w", err)
		}
		if secret, err = config.ReadSecretFile(c.SecretKeyFile); err != nil {
			return nil, fmt.Errorf("s3.secret_key_file: %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s3volume.New(ctx, s3volume.Config{
		Endpoint: c.Endpoint, Region: c.Region, Bucket: c.Bucket, Prefix: c.Prefix,
		AccessKey: access, SecretKey: secret, UseTLS: c.UseTLS, PathStyle: c.PathStyle,
		Concurrency: c.Concurrency, Retries: c.Retries, RaceWindow: c.RaceWindow,
		Policy: policy, Logger: log.With("mount", vc.UUID), Registerer: reg,
	})
}
