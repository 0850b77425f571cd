package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/admin"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/state/sqlite"
)

// storagesOf turns the configured storages into the gateway's, with the
// stores' services (by URL); an upstream storage gets its service token.
func storagesOf(cfg *config.Keepproxy, services []gateway.Service) ([]gateway.Storage, error) {
	byURL := map[string]gateway.Service{}
	for _, s := range services {
		byURL[s.URL] = s
	}
	var out []gateway.Storage
	for _, name := range cfg.StorageNames() {
		st := cfg.Storages[name]
		gs := gateway.Storage{Name: name, Classes: st.Classes, DefaultReplicas: st.DefaultReplicas, MaxReplicas: st.MaxReplicas}
		if st.Upstream != "" {
			gs.Upstream = &gateway.Upstream{URL: st.Upstream, Identity: st.Identity}
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

// tenancy is the state with the access keys, and the admin API.
type tenancy struct {
	db    *sqlite.DB
	keys  *gateway.AccessKeys
	admin *http.Server
	ln    net.Listener
}

// openTenancy opens what state.path and admin.token_file configure (nil
// when state.path is empty).
func openTenancy(ctx context.Context, cfg *config.Keepproxy, log *slog.Logger) (*tenancy, error) {
	if cfg.State.Path == "" {
		return nil, nil
	}
	pepper, err := config.ReadSecretFile(cfg.State.PepperFile)
	if err != nil {
		return nil, fmt.Errorf("state.pepper_file: %w", err)
	}
	if len(pepper) < 16 {
		return nil, fmt.Errorf("state.pepper_file %s: the pepper has %d characters; use at least 16 random ones (head -c 32 /dev/urandom | base64)", cfg.State.PepperFile, len(pepper))
	}
	db, err := sqlite.Open(ctx, cfg.State.Path)
	if err != nil {
		return nil, err
	}
	h := access.Hasher{Pepper: []byte(pepper)}
	t := &tenancy{db: db, keys: gateway.NewAccessKeys(db, h)}
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

// serve runs the admin API and flushes last-used times until ctx ends.
func (t *tenancy) serve(ctx context.Context, log *slog.Logger) {
	go t.keys.KeepFlushing(ctx, 10*time.Second)
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

func (t *tenancy) close() {
	if t.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t.admin.Shutdown(ctx)
		cancel()
	}
	t.keys.FlushUsed(context.Background())
	t.db.Close()
}

// rulesOf turns the configured forwarding rules into the gateway's.
func rulesOf(cfg *config.Keepproxy) []gateway.Rule {
	var out []gateway.Rule
	for _, r := range cfg.Rules {
		out = append(out, gateway.Rule{Name: r.Name, Hosts: r.Hosts, Storages: r.Storages, DefaultStorage: r.DefaultStorage, CORSOrigins: r.CORSOrigins})
	}
	return out
}

// reloadRules re-reads the config file on SIGHUP and applies its rules;
// a config that does not load keeps the rules in force.
func reloadRules(path string, gw *gateway.Gateway, log *slog.Logger) {
	if path == "" {
		return
	}
	cfg, err := config.LoadKeepproxy(path)
	if err != nil {
		log.Error("config reload on SIGHUP failed; keeping the forwarding rules in force", "error", err.Error())
		return
	}
	gw.SetRules(rulesOf(cfg), cfg.UnknownHost)
	log.Info("forwarding rules reloaded", "rules", len(cfg.Rules))
}

func individualStorages(cfg *config.Keepproxy) []string {
	var out []string
	for n := range cfg.IndividualStorages() {
		out = append(out, n)
	}
	return out
}
