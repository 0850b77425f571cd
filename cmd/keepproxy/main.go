// Command keepproxy is keepgate's internet-facing Keep gateway. It sits
// behind nginx (TLS on 443) on 127.0.0.1:25107, authenticates API tokens,
// answers CORS preflights, and streams blocks to and from the keepstores.
//
//	keepproxy -config /etc/keepgate/keepproxy.yml
//
// Every setting can also come from KEEPPROXY_* environment variables, and
// ARVADOS_API_HOST / ARVADOS_API_TOKEN / ARVADOS_API_HOST_INSECURE make it
// validate tokens against, and discover stores from, an Arvados API server
// with no config file at all.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/gateway"
	gatewayapi "github.com/keepgate/keepgate/gateway/api"
	"github.com/keepgate/keepgate/gateway/web"
	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
)

const usage = `Usage: keepproxy [-config FILE]

keepproxy is the internet-facing Keep gateway of keepgate.

Options:
  -config FILE   YAML configuration (see config/keepproxy.example.yml)
  -h             this help

Environment (every variable keepproxy reads; none holds a token except
ARVADOS_API_TOKEN, and none is logged):
  KEEPPROXY_<KEY>   overrides a key of the file; nested keys joined with "_",
                    lists comma-separated, lists of structures as JSON, e.g.
                    KEEPPROXY_LISTEN=127.0.0.1:25107, KEEPPROXY_DEFAULT_REPLICAS=2,
                    KEEPPROXY_TOKEN_FILE=/etc/keepgate/tokens.yml,
                    KEEPPROXY_API_HOST=api.example:443, KEEPPROXY_MAX_CONNECTIONS=4096,
                    KEEPPROXY_STORES='[{"url":"http://10.0.0.5:25108"}]'.
  ARVADOS_API_HOST  when api.host is unset: validate tokens against this API
                    server (an authentication source IN ADDITION to token_file)
                    and, with no stores listed, discover the keepstores from it.
  ARVADOS_API_TOKEN when api.token_file is unset: the token for store discovery.
  ARVADOS_API_HOST_INSECURE  1, true or yes: do not verify the API server's TLS
                    certificate (fills api.insecure; development only).
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY  used for requests to the API server only
                    (never toward the keepstores).
  GOMEMLIMIT, GOGC, GOMAXPROCS, GODEBUG  Go runtime settings.
At start keepproxy logs one line naming its authentication sources (token
file path, API host and where it came from) and its store source.

Signals: SIGHUP reloads the token file; SIGTERM/SIGINT shut down gracefully.
`

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "keepproxy:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("keepproxy", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage) }
	cfgPath := fs.String("config", "", "YAML configuration file")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	cfg, err := config.LoadKeepproxy(*cfgPath)
	if err != nil {
		return err
	}
	log := newLogger(cfg.LogLevel)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	opt := gatewayapi.Options{
		Options: gateway.Options{
			Window:           int64(cfg.PutWindow),
			MemoryBudget:     int64(cfg.MemoryBudget),
			ClientShare:      int64(cfg.ClientMemoryShare),
			StoreSlots:       cfg.StoreSlots,
			ClientStoreSlots: cfg.ClientStoreSlots,
			UpstreamIdle:     cfg.UpstreamIdleTimeout,
			VerifyPuts:       cfg.VerifyPuts,
			Logger:           log,
			Registry:         reg,
		},
		DefaultReplicas: cfg.DefaultReplicas,
		MinBodyRate:     int64(cfg.MinBodyRate),
		BodyGrace:       cfg.BodyGrace,
		BodyIdleTimeout: cfg.BodyIdleTimeout,
		TrustedProxies:  cfg.TrustedProxyPrefixes(),
	}
	if cfg.ManagementTokenFile != "" {
		if opt.ManagementToken, err = config.ReadSecretFile(cfg.ManagementTokenFile); err != nil {
			return fmt.Errorf("management_token_file: %w", err)
		}
	}
	if cfg.StoreAdminTokenFile != "" {
		if opt.StoreAdminToken, err = config.ReadSecretFile(cfg.StoreAdminTokenFile); err != nil {
			return fmt.Errorf("store_admin_token_file: %w", err)
		}
	}
	if cfg.StoreWriteTokenFile != "" { // config validation: with blob_signing_key_file
		if opt.StoreWriteToken, err = config.ReadSecretFile(cfg.StoreWriteTokenFile); err != nil {
			return fmt.Errorf("store_write_token_file: %w", err)
		}
		key, err := config.ReadSecretFile(cfg.BlobSigningKeyFile)
		if err != nil {
			return fmt.Errorf("blob_signing_key_file: %w", err)
		}
		if len(key) < 32 {
			return fmt.Errorf("blob_signing_key_file: the key has %d characters; use at least 32 (the keepstores' key)", len(key))
		}
		opt.BlobSigningKey, opt.SignatureTTL = []byte(key), cfg.SignatureTTL
	}
	if cfg.Uploader {
		opt.UploaderFS = uploaderFS()
	}

	auditLog, err := openAudit(cfg.Audit, log, reg)
	if err != nil {
		return err
	}
	opt.ProxyID = cfg.ProxyID
	opt.Meter = &metering.Meter{}
	if auditLog != nil {
		opt.Meter.Accountants = append(opt.Meter.Accountants, auditLog)
		opt.Meter.Admitters = append(opt.Meter.Admitters, auditLog)
		defer func() {
			actx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			auditLog.Close(actx) // what is queued is written out, for at most 5 s
		}()
	}

	var chain access.Chain
	var tokenFile *access.TokenFile
	if cfg.TokenFile != "" {
		if tokenFile, err = access.LoadTokenFile(cfg.TokenFile, log); err != nil {
			return err
		}
		chain = append(chain, tokenFile)
	}
	var remote *access.RemoteAuth
	if cfg.API.Host != "" {
		remote = access.NewRemoteAuth(cfg.API.Host, cfg.API.Insecure)
		chain = append(chain, remote)
	}
	cache := access.NewCache(chain, cfg.TokenCacheSize, cfg.TokenCacheTTL, cfg.TokenCacheNegativeTTL, log)
	opt.Auth = cache
	ten, err := openTenancy(ctx, cfg, log, reg, opt.Meter)
	if err != nil {
		return err
	}
	if ten != nil {
		defer ten.close()
		// Access keys first, outside the TTL cache: a revocation counts
		// from the next request.
		opt.Auth = access.Chain{ten.keys, cache}
	}

	for _, s := range cfg.Stores {
		uuid := s.UUID
		if uuid == "" {
			uuid = placement.SyntheticUUID(cfg.ClusterID, s.AsWritten)
		}
		opt.Services = append(opt.Services, placement.Service{UUID: uuid, URL: s.URL, ReadOnly: s.ReadOnly})
	}
	if opt.Storages, err = storagesOf(cfg, opt.Services); err != nil {
		return err
	}
	opt.DefaultStorage = cfg.DefaultStorage
	opt.Rules, opt.UnknownHost = rulesOf(cfg), cfg.UnknownHost
	var discoveryToken string
	var discovery *placement.Discovery // the stores' registry, when none are configured
	if len(opt.Services) == 0 {
		if discoveryToken, err = cfg.DiscoveryToken(); err != nil {
			return err
		}
		discovery = &placement.Discovery{BaseURL: remote.BaseURL, Client: remote.Client}
		if opt.Services, err = discovery.Discover(ctx, discoveryToken); err != nil {
			return fmt.Errorf("no stores configured and discovery failed: %w", err)
		}
	}
	bindAPI, err := mountArvadosAPI(cfg, ten, &opt, log)
	if err != nil {
		return err
	}
	api, err := gatewayapi.New(opt)
	if err != nil {
		return err
	}
	gw := api.Gateway()
	bindAPI(api)
	if discovery != nil {
		go discovery.Feed(ctx, discoveryToken, cfg.DiscoveryInterval, gw.SetServices, log)
	}
	if tokenFile != nil {
		tokenFile.OnReload = cache.Purge
		go tokenFile.Watch(ctx, 2*time.Second)
	}
	// SIGHUP: reload the token file, reopen the audit files (logrotate).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for range hup {
			if tokenFile != nil {
				if err := tokenFile.Reload(); err != nil {
					log.Error("token file reload on SIGHUP failed; keeping the previous tokens", "error", err.Error())
				}
			}
			if auditLog != nil {
				auditLog.Reopen()
			}
			reloadRules(*cfgPath, api, log)
		}
	}()

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	srv, err := httpserver.NewServer(httpserver.Options{Handler: api.Handler(), Logger: log, Registry: reg, Namespace: "keepproxy",
		Limits: serverLimits(cfg.ServerLimits, cfg.TrustedProxyPrefixes())})
	if err != nil {
		return err
	}
	names := make([]string, 0, len(opt.Services))
	for _, s := range gw.Services() {
		names = append(names, s.URL)
	}
	src := cfg.Sources()
	log.Info("authentication and store sources", "auth_sources", src.Auth, "store_source", src.Stores,
		"store_write_token", opt.StoreWriteToken != "", "store_admin_token", opt.StoreAdminToken != "")
	lim := srv.Limits()
	log.Info("keepproxy listening", "address", ln.Addr().String(), "stores", names, "default_replicas", cfg.DefaultReplicas,
		"max_header_bytes", lim.MaxHeaderBytes, "max_header_fields", lim.MaxHeaderFields, "max_connections", lim.MaxConnections,
		"max_connections_per_client", lim.MaxConnectionsPerClient, "idle_timeout", lim.IdleTimeout.String())
	if ten != nil {
		ten.serve(ctx, log)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// serverLimits are the listener limits of the configuration; peers in
// trusted_proxies (nginx) are exempt from the per-client cap.
func serverLimits(c config.ServerLimits, trusted []netip.Prefix) httpserver.Limits {
	return httpserver.Limits{MaxHeaderBytes: int(c.MaxHeaderBytes), MaxHeaderFields: c.MaxHeaderFields,
		MaxConnections: c.MaxConnections, MaxConnectionsPerClient: c.MaxConnectionsPerClient, Exempt: trusted,
		ReadHeaderTimeout: c.RequestHeaderTimeout, IdleTimeout: c.IdleTimeout}
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

func uploaderFS() http.FileSystem { return web.FS() }
