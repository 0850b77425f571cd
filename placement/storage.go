package placement

import (
	"context"
	"slices"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// ImplicitStorage names the one storage of a config without storages:
// every store.
const ImplicitStorage = "default"

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

// Find returns the storage called name among storages: KindForbidden
// when there is none (a credential bound to a storage this keepproxy does
// not configure).
func Find(storages []Storage, name string) (Storage, error) {
	for _, s := range storages {
		if s.Name == name {
			return s, nil
		}
	}
	return Storage{}, blockstore.Errorf(blockstore.KindForbidden, "storage %q of this credential is not configured on this keepproxy", name)
}

// Fit fits a write to the storage: replicas default to the storage's
// (unless the client asked for a number) and are clamped to its maximum
// (X-Keep-Replicas-Stored then says how many were made); a class the
// storage does not offer is refused (KindBadRequest), naming the ones it
// does. It returns the replicas to make.
func (s Storage) Fit(replicas int, asked bool, classes []string) (int, error) {
	if !asked && s.DefaultReplicas > 0 {
		replicas = s.DefaultReplicas
	}
	if s.MaxReplicas > 0 && replicas > s.MaxReplicas {
		replicas = s.MaxReplicas
	}
	if len(s.Classes) == 0 {
		return replicas, nil
	}
	for _, c := range classes {
		if !slices.Contains(s.Classes, c) {
			return replicas, blockstore.Errorf(blockstore.KindBadRequest, "storage class %q is not offered by storage %s; use one of: %s", c, s.Name, strings.Join(s.Classes, ", "))
		}
	}
	return replicas, nil
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
			r.upstreams[s.Name] = s.UpstreamService()
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

// Upstream makes a storage another Keep gateway (a keepgate or an Arvados
// keepproxy, KEEP-PROTOCOL §6) instead of a pool of keepstores. Blocks
// stream through keepgate to it and back, with Range and the X-Keep-*
// headers, under keepgate's rules, CORS, budgets and audit.
//
// Identity says who keepgate is toward it:
//   - squashed: keepgate authenticates the caller itself (access keys,
//     token file) and talks upstream with one service token, Token. The
//     locator the caller gets is signed by keepgate for the caller and
//     carries the upstream's own signature for the service token in an
//     +R hint (as Arvados federation carries a remote cluster's), which
//     keepgate presents upstream on GET. A locator without it, or with
//     another storage's, is refused.
//   - individual: the caller's own token goes upstream unchanged and the
//     upstream signs and decides; keepgate passes locators through. Tokens
//     keepgate does not know are accepted for such a storage (the upstream
//     judges them); access keys cannot be bound to it.
type Upstream struct {
	URL      string
	Identity string
	Token    string // squashed: keepgate's token at the upstream
}

// Identity modes of an upstream storage.
const (
	IdentitySquashed   = "squashed"
	IdentityIndividual = "individual"
)

// UpstreamService is the one "store" of an upstream storage (s.Upstream
// set): its UUID starts "upstream-", which the store client recognises.
func (s Storage) UpstreamService() Service {
	return Service{UUID: "upstream-" + s.Name, URL: strings.TrimRight(s.Upstream.URL, "/")}
}
