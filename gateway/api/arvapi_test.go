package gatewayapi

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/placement"
)

// The gateway's side of the Arvados API: the same authentication,
// signatures and storage isolation as the block routes.
func TestAPICallerSignVerifyCheck(t *testing.T) {
	const tokA, tokB, tokFile = "v2/key-a/secret-a-0123456789", "v2/key-b/secret-b-0123456789", "file-token-0123456789"
	c := newCluster(t, 4, func(o *Options) {
		o.Auth = staticAuth{
			tokA:    {Name: "key-a", Source: "access-key", Storage: "s-a", UID: "uid-a", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}, Expires: time.Now().Add(time.Hour)},
			tokB:    {Name: "key-b", Source: "access-key", Storage: "s-b", UID: "uid-b", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}},
			tokFile: {Name: "rw", Source: "token-file", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}},
		}
		o.BlobSigningKey, o.StoreWriteToken = []byte(testStoreSigningKey), "store-write-token-0123456789"
		o.Storages = []placement.Storage{{Name: "s-a", Stores: o.Services[:2]}, {Name: "s-b", Stores: o.Services[2:]}}
		o.DefaultStorage = "s-a"
	})
	data := []byte("a block of storage s-a")
	resp := c.do("PUT", "/"+blockstore.HashOf(data).String(), tokA, data, nil)
	locText := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, locText)
	}
	loc, _ := blockstore.ParseLocator(locText)
	caller := func(h, q string) (*APICaller, error) {
		r := httptest.NewRequest("GET", "/arvados/v1/users/current"+q, nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		return c.gw.Authenticate(r)
	}
	a, err := caller("Bearer "+tokA, "")
	if err != nil || a.Identity.Name != "key-a" {
		t.Fatalf("Authenticate: %v", err)
	}
	b, _ := caller("", "?api_token="+tokB)
	f, _ := caller("OAuth2 "+tokFile, "")
	if b == nil || f == nil || b.Identity.Name != "key-b" || f.Identity.Name != "rw" {
		t.Fatalf("api_token / OAuth2: %+v %+v", b, f)
	}
	for _, h := range []string{"", "Bearer nope", "Basic bm8tY29sb24="} {
		if _, err := caller(h, ""); !blockstore.Is(err, blockstore.KindNoToken) || !strings.Contains(blockstore.Message(err), "Not logged in") {
			t.Errorf("Authorization %q: %v, want 401 Not logged in", h, err)
		}
	}
	if st, _ := c.gw.StorageOf(f); st.Name != "s-a" {
		t.Errorf("token-file principal's storage %q, want the default", st.Name)
	}
	// Signatures: the PUT's locator is valid for key a only; re-signed
	// for each caller, it is valid for that caller.
	if err := c.gw.VerifyFor(a, loc); err != nil {
		t.Fatalf("key a's own locator: %v", err)
	}
	if err := c.gw.VerifyFor(b, loc); err == nil {
		t.Fatal("key b accepted key a's locator")
	}
	for _, who := range []*APICaller{a, b, f} {
		if err := c.gw.VerifyFor(who, c.gw.SignFor(who, loc, time.Time{})); err != nil {
			t.Errorf("%s: its own signature: %v", who.Identity.Name, err)
		}
	}
	soon := time.Now().Add(10 * time.Minute).Truncate(time.Second)
	if exp, _ := blockstore.SignatureExpiry(c.gw.SignFor(a, loc, soon)); !exp.Equal(soon) {
		t.Errorf("notAfter: expiry %v, want %v", exp, soon)
	}
	if exp, _ := blockstore.SignatureExpiry(c.gw.SignFor(a, loc, time.Time{})); exp.After(a.Identity.Expires) {
		t.Errorf("expiry %v after the key's %v", exp, a.Identity.Expires)
	}
	// Presence: in key a's storage; not in key b's (even with a locator
	// signed for b), and a token-file principal sees the default storage.
	ctx := context.Background()
	if err := c.gw.CheckBlock(ctx, a, loc); err != nil {
		t.Fatalf("CheckBlock in its storage: %v", err)
	}
	if err := c.gw.CheckBlock(ctx, b, c.gw.SignFor(b, loc, time.Time{})); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("CheckBlock from another storage: %v, want not found", err)
	}
	if err := c.gw.CheckBlock(ctx, f, c.gw.SignFor(f, loc, time.Time{})); err != nil {
		t.Fatalf("CheckBlock by a token-file principal of the default storage: %v", err)
	}
	if err := c.gw.CheckBlock(ctx, a, blockstore.Locator{Hash: blockstore.EmptyHash, Size: 0}); err != nil {
		t.Fatalf("the empty block: %v", err)
	}
}
