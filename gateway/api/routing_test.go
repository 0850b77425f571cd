package gatewayapi

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
)

// hostRouter sends blocks of clients connected to "b.example" to the last
// store only: the shape of a host-based routing rule.
type hostRouter struct {
	def  placement.Router
	only placement.Service
}

func (h hostRouter) Route(ctx context.Context, r placement.RouteRequest) []placement.Service {
	if r.Host == "b.example" {
		return []placement.Service{h.only}
	}
	return h.def.Route(ctx, r)
}

type memAccountant struct {
	mu sync.Mutex
	ts []*metering.Transfer
}

func (m *memAccountant) Record(_ context.Context, t *metering.Transfer) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ts = append(m.ts, t)
}

func TestRouterAndAccountant(t *testing.T) {
	acct := &memAccountant{}
	var c *cluster
	c = newCluster(t, 3, func(o *Options) {
		o.Meter = &metering.Meter{Accountants: []metering.Accountant{acct}}
		o.ProxyID = "proxy-7"
		o.Router = routerFunc(func(ctx context.Context, r placement.RouteRequest) []placement.Service {
			return hostRouter{def: placement.NewRendezvousRouter(o.Services), only: o.Services[2]}.Route(ctx, r)
		})
	})
	// A block whose rendezvous order does not start with the routed store,
	// so only the rule can put it there.
	seed := uint64(91)
	data, h := volumetest.Block(seed, 1000)
	for c.ordered(h)[0] == c.stores[2] {
		seed++
		data, h = volumetest.Block(seed, 1000)
	}
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"Host": "b.example", "X-Keep-Desired-Replicas": "1"})
	loc := readAll(t, resp)
	if resp.StatusCode != 200 || !c.stores[2].has(h) || c.stores[0].has(h) || c.stores[1].has(h) {
		t.Fatalf("host-routed PUT: %d, placement %v %v %v", resp.StatusCode, c.stores[0].has(h), c.stores[1].has(h), c.stores[2].has(h))
	}
	resp = c.do("GET", "/"+loc, tokRW, nil, map[string]string{"Host": "b.example"})
	if readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("host-routed GET: %d", resp.StatusCode)
	}
	acct.mu.Lock()
	defer acct.mu.Unlock()
	if len(acct.ts) != 2 {
		t.Fatalf("%d transfers recorded, want 2: %+v", len(acct.ts), acct.ts)
	}
	put, get := acct.ts[0], acct.ts[1]
	block := fmt.Sprintf("%s+1000", h)
	if put.Op != "put" || put.PrincipalID != "rw" || put.PrincipalKind != "test" || put.BytesIn != 1000 || put.BytesOut != 0 ||
		put.ReplicasWanted != 1 || put.ReplicasStored != 1 || put.Status != 200 || put.Host != "b.example" || put.Block != block ||
		put.ProxyID != "proxy-7" || put.Storage != "default" || put.ErrorKind != "" || put.RequestID == "" || put.Duration <= 0 ||
		get.Op != "get" || get.BytesOut != 1000 || get.BytesIn != 0 || get.Status != 200 || get.Block != block || get.TTFB <= 0 || get.TTFB > get.Duration {
		t.Fatalf("transfers: %+v %+v", put, get)
	}
}

type routerFunc func(context.Context, placement.RouteRequest) []placement.Service

func (f routerFunc) Route(ctx context.Context, r placement.RouteRequest) []placement.Service {
	return f(ctx, r)
}
