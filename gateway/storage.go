package gateway

import (
	"context"
	"slices"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// Storage is a named place for blocks: a pool of keepstores, optionally
// narrowed to storage classes, with its own default and maximum replicas.
// A config without storages has one implicit storage ("default"): every
// store, the proxy's default replicas, no class restriction, no maximum.
type Storage struct {
	Name            string
	Stores          []Service
	Classes         []string // allowed storage classes; empty: any
	DefaultReplicas int      // 0: the proxy's default_replicas
	MaxReplicas     int      // 0: no maximum
	// Upstream, if set, makes the storage another Keep gateway (Stores
	// is then empty); see Upstream.
	Upstream *Upstream
}

// StorageRouter routes every request to the pool of its principal's
// storage: an access key's own storage, or the default storage for
// token-file and API principals. A principal whose storage is not
// configured gets no store at all (so its requests fail; they never reach
// another storage's stores).
type StorageRouter struct {
	pools     map[string]*RendezvousRouter
	upstreams map[string]Service // an upstream storage's one "store"
	def       string
}

// NewStorageRouter routes over storages; def names the default storage.
func NewStorageRouter(storages []Storage, def string) *StorageRouter {
	r := &StorageRouter{pools: map[string]*RendezvousRouter{}, upstreams: map[string]Service{}, def: def}
	for _, s := range storages {
		if s.Upstream != nil {
			r.upstreams[s.Name] = s.upstreamService()
			continue
		}
		r.pools[s.Name] = NewRendezvousRouter(s.Stores)
	}
	return r
}

// Route implements Router.
func (r *StorageRouter) Route(ctx context.Context, req RouteRequest) []Service {
	name := r.def
	if req.Identity != nil && req.Identity.Storage != "" {
		name = req.Identity.Storage
	}
	if svc, ok := r.upstreams[name]; ok {
		return []Service{svc}
	}
	p := r.pools[name]
	if p == nil {
		return nil
	}
	return p.Route(ctx, req)
}

// storageOf returns the storage a principal uses.
func (g *Gateway) storageOf(id *Identity) (Storage, error) {
	name := g.opt.DefaultStorage
	if id != nil && id.Storage != "" {
		name = id.Storage
	}
	for _, s := range g.opt.Storages {
		if s.Name == name {
			return s, nil
		}
	}
	return Storage{}, blockstore.Errorf(blockstore.KindForbidden, "storage %q of this credential is not configured on this keepproxy", name)
}

// applyStorage fits a PUT or POST to its storage: replicas default to the
// storage's and are clamped to its maximum (X-Keep-Replicas-Stored then
// says how many were made); a class the storage does not offer is
// refused, naming the ones it does.
func (g *Gateway) applyStorage(st Storage, req *PutRequest, replicasAsked bool) error {
	if !replicasAsked && st.DefaultReplicas > 0 {
		req.Replicas = st.DefaultReplicas
	}
	if st.MaxReplicas > 0 && req.Replicas > st.MaxReplicas {
		req.Replicas = st.MaxReplicas
	}
	if len(st.Classes) == 0 {
		return nil
	}
	for _, c := range req.Classes {
		if !slices.Contains(st.Classes, c) {
			return blockstore.Errorf(blockstore.KindBadRequest, "storage class %q is not offered by storage %s; use one of: %s", c, st.Name, strings.Join(st.Classes, ", "))
		}
	}
	return nil
}
