package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/arvapi"
	"github.com/keepgate/keepgate/blockstore"
	gatewayapi "github.com/keepgate/keepgate/gateway/api"
	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/placement"
	"github.com/keepgate/keepgate/state"
)

// mountArvadosAPI builds the Arvados API slice when arvados_api.enabled
// and sets it as opt.API; the returned bind must be called with the
// server built from opt before the listener opens (it is a no-op when the
// API is off).
func mountArvadosAPI(cfg *config.Keepproxy, ten *tenancy, opt *gatewayapi.Options, log *slog.Logger) (bind func(*gatewayapi.Server), err error) {
	if err := cfg.ValidateArvadosAPI(); err != nil {
		return nil, err
	}
	if !cfg.ArvadosAPI.Enabled {
		return func(*gatewayapi.Server) {}, nil
	}
	var colls state.CollectionStore
	if ten != nil {
		colls, _ = any(ten.db).(state.CollectionStore)
	}
	if colls == nil {
		return nil, fmt.Errorf("arvados_api.enabled: the configured state engine does not hold collections")
	}
	def := placement.Storage{DefaultReplicas: cfg.DefaultReplicas}
	for _, st := range opt.Storages {
		if st.Name == opt.DefaultStorage {
			def = st
		}
	}
	keep := &gatewayKeep{}
	srv, err := arvapi.New(arvapi.Options{Keep: keep, Collections: colls, UUIDPrefix: cfg.ArvadosUUIDPrefix(), SignatureTTL: cfg.SignatureTTL,
		DefaultReplicas: replicasOf(def, cfg.DefaultReplicas), DefaultClasses: def.Classes, MaxRequestSize: int64(cfg.ArvadosAPI.MaxRequestSize),
		TrashLifetime: cfg.ArvadosAPI.TrashLifetime, TrustedProxies: cfg.TrustedProxyPrefixes(), Logger: log})
	if err != nil {
		return nil, err
	}
	opt.API = srv
	log.Info("Arvados API enabled", "paths", []string{"/discovery/v1/", "/arvados/v1/"}, "uuid_prefix", cfg.ArvadosUUIDPrefix())
	return func(s *gatewayapi.Server) { keep.s = s }, nil
}

// replicasOf is what a write to st gets without X-Keep-Desired-Replicas.
func replicasOf(st placement.Storage, proxyDefault int) int {
	n := st.DefaultReplicas
	if n <= 0 {
		n = proxyDefault
	}
	if st.MaxReplicas > 0 && n > st.MaxReplicas {
		n = st.MaxReplicas
	}
	return n
}

// gatewayKeep is arvapi.Keep over keepproxy.
type gatewayKeep struct{ s *gatewayapi.Server }

func (k *gatewayKeep) Authenticate(r *http.Request) (*arvapi.Caller, error) {
	c, err := k.s.Authenticate(r)
	if err != nil {
		return nil, err
	}
	st, err := k.s.StorageOf(c)
	if err != nil {
		return nil, err
	}
	id := c.Identity
	return &arvapi.Caller{Kind: id.Source, ID: id.Name, Storage: st.Name, Classes: st.Classes, DefaultReplicas: replicasOf(st, k.s.DefaultReplicas()),
		CanRead: id.Has(access.ScopeRead), CanWrite: id.Has(access.ScopeWrite), Expires: id.Expires, Ref: c}, nil
}

func (k *gatewayKeep) Sign(c *arvapi.Caller, loc blockstore.Locator, notAfter time.Time) blockstore.Locator {
	return k.s.SignFor(c.Ref.(*gatewayapi.APICaller), loc, notAfter)
}

func (k *gatewayKeep) Verify(c *arvapi.Caller, loc blockstore.Locator) error {
	return k.s.VerifyFor(c.Ref.(*gatewayapi.APICaller), loc)
}

func (k *gatewayKeep) CheckBlock(ctx context.Context, c *arvapi.Caller, loc blockstore.Locator) error {
	return k.s.CheckBlock(ctx, c.Ref.(*gatewayapi.APICaller), loc)
}
