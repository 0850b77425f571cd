package placement

import (
	"context"
	"sync/atomic"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
)

// RouteRequest is what a Router decides on.
type RouteRequest struct {
	Hash     blockstore.Hash
	Write    bool             // choosing stores to write (read-only stores excluded)
	Host     string           // the host the client connected to (Host header)
	Identity *access.Identity // who asks (nil for internal copies)
}

// Router decides which stores a block goes to, and in which order they are
// tried. Contract: the result is the full candidate list in preference
// order (writers take the first N and fall back to the rest); for a write
// it holds no read-only store; it must be safe for concurrent use and
// cheap (it runs once per request). Rules by connected host, storage pools
// per access key, and the like are Routers.
type Router interface {
	Route(ctx context.Context, r RouteRequest) []Service
}

// RendezvousRouter orders one set of stores by Arvados' rendezvous hashing
// (KEEP-PROTOCOL §8.1), so keepgate and Arvados clients agree on where
// each block lives.
type RendezvousRouter struct {
	services atomic.Pointer[[]Service]
}

// NewRendezvousRouter routes over svcs.
func NewRendezvousRouter(svcs []Service) *RendezvousRouter {
	r := &RendezvousRouter{}
	r.SetServices(svcs)
	return r
}

// SetServices replaces the store set (e.g. after discovery).
func (rr *RendezvousRouter) SetServices(s []Service) {
	cp := append([]Service(nil), s...)
	rr.services.Store(&cp)
}

// Services returns the current store set.
func (rr *RendezvousRouter) Services() []Service { return *rr.services.Load() }

// Route implements Router.
func (rr *RendezvousRouter) Route(_ context.Context, req RouteRequest) []Service {
	svcs := rr.Services()
	uuids := make([]string, len(svcs))
	for i, s := range svcs {
		uuids[i] = s.UUID
	}
	out := make([]Service, 0, len(svcs))
	for _, i := range blockstore.ServiceOrder(req.Hash, uuids) {
		if req.Write && svcs[i].ReadOnly {
			continue
		}
		out = append(out, svcs[i])
	}
	return out
}
