package gateway

import (
	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/placement"
)

// StorageOf returns the storage a principal uses: its own (an access
// key's), else the default storage (nil id: the default storage). A
// storage this gateway does not configure is KindForbidden.
func (g *Gateway) StorageOf(id *access.Identity) (placement.Storage, error) {
	name := g.opt.DefaultStorage
	if id != nil && id.Storage != "" {
		name = id.Storage
	}
	return placement.Find(g.opt.Storages, name)
}

// DefaultStorage names the storage of principals without one of their
// own (placement.ImplicitStorage when none are configured).
func (g *Gateway) DefaultStorage() string { return g.opt.DefaultStorage }
