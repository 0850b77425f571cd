package gatewayapi

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/node/nodehttp"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/placement"
)

// upstreamCluster is a second keepgate (real in-process keepstore nodes on
// memory volumes, signing with their own key) that a storage can point to.
type upstreamCluster struct {
	url  string
	vols []*memvolume.Volume
}

func newUpstreamCluster(t *testing.T, tokens staticAuth) *upstreamCluster {
	const writeToken = "upstream-write-token-0123456789"
	key := []byte("upstreamsigningkey0123456789abcdefghijklmnopqrstuvwxyz")
	u := &upstreamCluster{}
	var svcs []placement.Service
	for i := 0; i < 2; i++ {
		vol := memvolume.New(blockstore.TrashPolicy{})
		n, err := node.New(node.Options{Mounts: []node.Mount{{UUID: fmt.Sprintf("yyyyy-nyw5e-%015d", i), Volume: vol}},
			Signer: &blockstore.Signer{Key: key, TTL: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(nodehttp.New(n, nodehttp.Options{WriteToken: writeToken}))
		t.Cleanup(srv.Close)
		svcs = append(svcs, placement.Service{UUID: fmt.Sprintf("yyyyy-bi6l4-%015d", i), URL: srv.URL})
		u.vols = append(u.vols, vol)
	}
	g, err := New(Options{Options: gateway.Options{Services: svcs, StoreWriteToken: writeToken, BlobSigningKey: key, Window: 1 << 20}, Auth: tokens})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler())
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

func (u *upstreamCluster) copies(t *testing.T, h blockstore.Hash) int {
	n := 0
	for _, v := range u.vols {
		if _, err := v.Stat(t.Context(), h); err == nil {
			n++
		}
	}
	return n
}

// A squashed upstream storage: keepgate authenticates its callers, talks
// upstream with its service token, and hands out locators signed for the
// caller that carry the upstream's signature in an R hint.
func TestUpstreamStorageSquashed(t *testing.T) {
	const svcToken = "downstream-service-token-0123456789"
	up := newUpstreamCluster(t, staticAuth{svcToken: {Name: "downstream", Source: "token-file", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}}})
	reg := prometheus.NewRegistry()
	c := newCluster(t, 1, func(o *Options) {
		o.Registry = reg
		o.BlobSigningKey = []byte("downstreamsigningkey0123456789abcdefghijklmnopqrstuvwxyz")
		o.StoreWriteToken = "unused-write-token"
		o.Storages = []placement.Storage{{Name: "local", Stores: o.Services}, {Name: "partner", Upstream: &placement.Upstream{URL: up.url, Identity: placement.IdentitySquashed, Token: svcToken}}}
		o.DefaultStorage = "partner"
	})
	data, h := volumetest.Block(71, 3<<20+5)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	loc := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" || up.copies(t, h) != 2 || c.stores[0].has(h) {
		t.Fatalf("PUT through the upstream: %d %q stored %q, %d upstream copies", resp.StatusCode, loc, resp.Header.Get("X-Keep-Replicas-Stored"), up.copies(t, h))
	}
	if !strings.Contains(loc, "+A") || !strings.Contains(loc, "+"+rHintPrefix("partner")) {
		t.Fatalf("locator %q lacks keepgate's signature or the upstream's R hint", loc)
	}
	resp = c.do("GET", "/"+loc, tokRW, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET through the upstream: %d, %d bytes", resp.StatusCode, len(got))
	}
	// The upstream relays its stores' per-chunk promise, and so does this
	// keepgate (so neither hashes the block again).
	if v := resp.Header.Get("X-Keep-Data-Verified"); v != "crc32c" {
		t.Fatalf("X-Keep-Data-Verified %q through two keepgates, want crc32c", v)
	}
	// ... and the bytes go socket to socket through this keepgate too.
	if n := splicedBytes(t, reg)(); n < float64(len(data)-64<<10) {
		t.Fatalf("spliced %.0f of %d bytes through the upstream storage", n, len(data))
	}
	resp = c.do("GET", "/"+loc, tokRW, nil, map[string]string{"Range": "bytes=1000-1999"})
	if got := readAll(t, resp); resp.StatusCode != 206 || got != string(data[1000:2000]) {
		t.Fatalf("range GET through the upstream: %d, %d bytes", resp.StatusCode, len(got))
	}
	// Another principal with this caller's locator: refused (422 like a store's refusal).
	if resp = c.do("GET", "/"+loc, tokRO, nil, nil); readAll(t, resp) == string(data) || resp.StatusCode != 422 {
		t.Fatalf("another principal's GET: %d", resp.StatusCode)
	}
	// Without the R hint the upstream has no signature for the service token.
	bare := strings.Split(loc, "+R")[0]
	if resp = c.do("GET", "/"+bare, tokRW, nil, nil); readAll(t, resp) == string(data) || resp.StatusCode == 200 {
		t.Fatalf("GET without the upstream's signature: %d", resp.StatusCode)
	}
	// A wrong body is refused upstream and nothing is stored.
	d2, h2 := volumetest.Block(72, 5000)
	resp = c.do("PUT", "/"+h2.String(), tokRW, append(d2[:4999:4999], 'x'), nil)
	if readAll(t, resp); resp.StatusCode != 400 || up.copies(t, h2) != 0 {
		t.Fatalf("wrong body through the upstream: %d, %d copies", resp.StatusCode, up.copies(t, h2))
	}
}

// An individual upstream storage: the caller's own token goes upstream,
// which signs and decides; keepgate passes locators through.
func TestUpstreamStorageIndividual(t *testing.T) {
	const userToken = "partner-user-token-0123456789"
	up := newUpstreamCluster(t, staticAuth{userToken: {Name: "partner-user", Source: "token-file", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}}})
	c := newCluster(t, 0, func(o *Options) {
		o.Auth = staticAuth{} // keepgate knows none of the partner's tokens
		o.Storages = []placement.Storage{{Name: "partner", Upstream: &placement.Upstream{URL: up.url, Identity: placement.IdentityIndividual}}}
		o.DefaultStorage = "partner"
	})
	data, h := volumetest.Block(73, 70000)
	resp := c.do("PUT", "/"+h.String(), userToken, data, nil)
	loc := readAll(t, resp)
	if resp.StatusCode != 200 || up.copies(t, h) == 0 || !strings.Contains(loc, "+A") || strings.Contains(loc, "+R") {
		t.Fatalf("PUT with the partner's token: %d %q", resp.StatusCode, loc)
	}
	resp = c.do("GET", "/"+loc, userToken, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != 200 || !bytes.Equal([]byte(got), data) {
		t.Fatalf("GET with the partner's token: %d", resp.StatusCode)
	}
	// The upstream judges tokens: a wrong one is refused there.
	resp = c.do("PUT", "/"+h.String(), "not-a-partner-token", data, nil)
	if body := readAll(t, resp); resp.StatusCode != 403 {
		t.Fatalf("PUT with a token the upstream does not know: %d %q", resp.StatusCode, body)
	}
	resp = c.do("GET", "/"+loc, "not-a-partner-token", nil, nil)
	if got, _ := io.ReadAll(resp.Body); resp.StatusCode == 200 || bytes.Equal(got, data) {
		t.Fatalf("GET with a token the upstream does not know: %d", resp.StatusCode)
	}
}

// A storage pointing (here directly) at this same keepgate: the request
// coming back is refused as a loop instead of recursing.
func TestUpstreamStorageLoop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	self := "http://" + ln.Addr().String()
	g, err := New(Options{Auth: staticAuth{tokRW: {Name: "rw", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}}},
		Options: gateway.Options{Storages: []placement.Storage{{Name: "self", Upstream: &placement.Upstream{URL: self, Identity: placement.IdentityIndividual}}},
			DefaultStorage: "self"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	data, h := volumetest.Block(74, 100)
	req, _ := http.NewRequest("PUT", self+"/"+h.String(), bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+tokRW)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 500 || !strings.Contains(string(body), "loop") {
		t.Fatalf("PUT through a storage pointing at itself: %d %q", resp.StatusCode, body)
	}
}

// rHintPrefix is how the gateway starts the hint that carries an
// upstream's signature (gateway/upstreamstorage.go): "Rkg" + 8 hex of
// md5(storage name) + "-".
func rHintPrefix(storage string) string {
	sum := md5.Sum([]byte(storage))
	return "Rkg" + hex.EncodeToString(sum[:4]) + "-"
}
