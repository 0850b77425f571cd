package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/admin"
	gatewayapi "github.com/keepgate/keepgate/gateway/api"
	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/postgres"
	"github.com/keepgate/keepgate/state/sqlite"
	kgusage "github.com/keepgate/keepgate/usage"
)

// storagesOf turns the configured storages into the gateway's, with the
// stores' services (by URL); an upstream storage gets its service token.
func storagesOf(cfg *config.Keepproxy, services []placement.Service) ([]placement.Storage, error) {
	byURL := map[string]placement.Service{}
	for _, s := range services {
		byURL[s.URL] = s
	}
	var out []placement.Storage
	for _, name := range cfg.StorageNames() {
		st := cfg.Storages[name]
		gs := placement.Storage{Name: name, Classes: st.Classes, DefaultReplicas: st.DefaultReplicas, MaxReplicas: st.MaxReplicas}
		if st.Upstream != "" {
			gs.Upstream = &placement.Upstream{URL: st.Upstream, Identity: st.Identity}
			if st.TokenFile != "" {
				tok, err := config.ReadSecretFile(st.TokenFile)
				if err != nil {
					return nil, fmt.Errorf("storages.%s.token_file: %w", name, err)
				}
				gs.Upstream.Token = tok
			}
		}
		for _, u := range st.Stores {
			gs.Stores = append(gs.Stores, byURL[strings.TrimRight(u, "/")])
		}
		out = append(out, gs)
	}
	return out, nil
}

// keyStorages are the storages access keys may be bound to: all but the
// individual upstreams (which do not know keepgate's keys).
func keyStorages(cfg *config.Keepproxy) []string {
	var out []string
	ind := cfg.IndividualStorages()
	for _, n := range cfg.StorageNames() {
		if !ind[n] {
			out = append(out, n)
		}
	}
	return out
}

// tenancy is the state database with the access keys, usage counting and
// flushing, the keys' limits, and the admin API.
type tenancy struct {
	db      state.Store
	keys    *access.AccessKeys
	counter *kgusage.Counter
	flusher *kgusage.Flusher
	beats   *kgusage.Heartbeats
	limits  *kgusage.Limits
	watcher state.KeyWatcher // postgres: other proxies' key changes
	cfg     config.ProxyState
	admin   *http.Server
	ln      net.Listener
}

// openState opens the configured engine: sqlite (state.path) or postgres
// (state.dsn_file; unreachable → an error naming its host, never the
// password).
func openState(ctx context.Context, c config.ProxyState, log *slog.Logger) (state.Store, error) {
	if c.Driver == "postgres" {
		dsn, err := config.ReadSecretFile(c.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("state.dsn_file: %w", err)
		}
		db, err := postgres.Open(ctx, dsn, log.With("state", "postgres"))
		if err != nil {
			return nil, fmt.Errorf("state (state.dsn_file %s): %w", c.DSNFile, err)
		}
		log.Info("state database", "driver", "postgres", "database", db.Where())
		return db, nil
	}
	return sqlite.Open(ctx, c.Path)
}

// openTenancy opens what state and admin.token_file configure (nil when
// no state database is configured), and plugs usage counting and the
// keys' limits into meter.
func openTenancy(ctx context.Context, cfg *config.Keepproxy, log *slog.Logger, reg prometheus.Registerer, meter *metering.Meter) (*tenancy, error) {
	if !cfg.State.Enabled() {
		return nil, nil
	}
	pepper, err := config.ReadSecretFile(cfg.State.PepperFile)
	if err != nil {
		return nil, fmt.Errorf("state.pepper_file: %w", err)
	}
	if len(pepper) < 16 {
		return nil, fmt.Errorf("state.pepper_file %s: the pepper has %d characters; use at least 16 random ones (head -c 32 /dev/urandom | base64)", cfg.State.PepperFile, len(pepper))
	}
	db, err := openState(ctx, cfg.State, log)
	if err != nil {
		return nil, err
	}
	proxy := cfg.ProxyID
	if proxy == "" {
		proxy, _ = os.Hostname()
	}
	h := access.Hasher{Pepper: []byte(pepper)}
	t := &tenancy{db: db, keys: access.NewAccessKeys(db, h), cfg: cfg.State}
	t.keys.Log = log.With("state", "access-keys")
	if w, ok := db.(state.KeyWatcher); ok {
		t.watcher = w
		t.keys.TTL = cfg.State.KeyCacheTTL
	}
	t.counter = kgusage.NewCounter(reg, nil)
	t.flusher = kgusage.NewFlusher(t.counter, db, proxy, log.With("state", "usage"), reg)
	t.beats = kgusage.NewHeartbeats(db, proxy, cfg.State.HeartbeatInterval, log.With("state", "heartbeats"))
	share := t.beats.Live // each proxy takes cap ÷ live proxies
	if cfg.State.PinnedKeys {
		share = nil // the balancer pins keys: the whole cap here
	}
	t.limits = kgusage.NewLimits(t.keys, share)
	meter.Accountants = append(meter.Accountants, t.counter)
	meter.Admitters = append(meter.Admitters, t.limits)
	if cfg.Admin.TokenFile == "" {
		return t, nil
	}
	token, err := config.ReadSecretFile(cfg.Admin.TokenFile)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("admin.token_file: %w", err)
	}
	api := admin.New(admin.Options{Store: db, Hasher: h, Token: token, Cluster: cfg.ClusterID, Storage: keyStorages(cfg), Individual: individualStorages(cfg),
		Changed: t.keys.Invalidate, Logger: log.With("api", "admin")})
	if t.ln, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
		db.Close()
		return nil, fmt.Errorf("admin.listen: %w", err)
	}
	t.admin = &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: time.Minute, MaxHeaderBytes: 32 << 10}
	return t, nil
}

// serve runs the admin API, the usage flusher, the heartbeats, the limits'
// refresh, the key change listener (postgres) and the last-used flush
// until ctx ends.
func (t *tenancy) serve(ctx context.Context, log *slog.Logger) {
	go t.keys.KeepFlushing(ctx, 10*time.Second)
	go t.flusher.Run(ctx, t.cfg.UsageFlushInterval)
	go t.beats.Run(ctx)
	go t.limits.Run(ctx)
	if t.watcher != nil {
		go t.watcher.WatchKeys(ctx, t.keys.Invalidate, t.keys.Purge)
	}
	if t.admin == nil {
		return
	}
	log.Info("admin API listening", "address", t.ln.Addr().String())
	go func() {
		if err := t.admin.Serve(t.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("admin API stopped", "error", err.Error())
		}
	}()
}

// close runs after the data listener has drained: the last usage counts
// are written (for at most 5 s), then the database is closed.
func (t *tenancy) close() {
	if t.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.admin.Shutdown(ctx)
		cancel()
	}
	t.keys.FlushUsed(context.Background())
	t.flusher.Close(5 * time.Second)
	t.db.Close()
}

// rulesOf turns the configured forwarding rules into the gateway's.
func rulesOf(cfg *config.Keepproxy) []placement.Rule {
	var out []placement.Rule
	for _, r := range cfg.Rules {
		out = append(out, placement.Rule{Name: r.Name, Hosts: r.Hosts, Storages: r.Storages, DefaultStorage: r.DefaultStorage, CORSOrigins: r.CORSOrigins})
	}
	return out
}

// reloadRules re-reads the config file on SIGHUP and applies its rules;
// a config that does not load keeps the rules in force.
func reloadRules(path string, api *gatewayapi.Server, log *slog.Logger) {
	if path == "" {
		return
	}
	cfg, err := config.LoadKeepproxy(path)
	if err != nil {
		log.Error("config reload on SIGHUP failed; keeping the forwarding rules in force", "error", err.Error())
		return
	}
	api.SetRules(rulesOf(cfg), cfg.UnknownHost)
	log.Info("forwarding rules reloaded", "rules", len(cfg.Rules))
}

func individualStorages(cfg *config.Keepproxy) []string {
	var out []string
	for n := range cfg.IndividualStorages() {
		out = append(out, n)
	}
	return out
}
