package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
)

// What the Arvados API (package arvapi, mounted through Options.API) needs
// from the gateway: the same authentication, signatures, storages and
// block look-ups as the block routes, so a collection is isolated exactly
// as its blocks are.

// APICaller is an authenticated caller of the Arvados API: its principal
// and the token it presented (kept here, never shown: token-file
// principals' locators are signed for it).
type APICaller struct {
	Identity *Identity
	token    string
	host     string // the Host the request named (routing)
}

// Authenticate resolves the request's credential (Authorization Bearer or
// OAuth2 token, Basic id:secret, else the api_token query parameter) to a
// principal. No credential: KindNoToken (401). A credential the
// authenticators refuse: also 401 (Arvados' answer to a bad token), with
// the refusal's message. Other failures (state or API server down) keep
// their kind. The request's forwarding rule applies as on the block routes.
func (g *Gateway) Authenticate(r *http.Request) (*APICaller, error) {
	token, err := access.FromAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, &blockstore.Error{Kind: blockstore.KindNoToken, Msg: "Not logged in: " + blockstore.Message(ErrBadToken)}
	}
	if token == "" {
		token = r.URL.Query().Get("api_token")
	}
	if token == "" {
		return nil, &blockstore.Error{Kind: blockstore.KindNoToken, Msg: "Not logged in: send 'Authorization: Bearer <token>' (an access key as v2/<id>/<secret>)"}
	}
	id, err := g.auth.Authenticate(r.Context(), token)
	if blockstore.Is(err, blockstore.KindForbidden) {
		return nil, &blockstore.Error{Kind: blockstore.KindNoToken, Msg: "Not logged in: " + blockstore.Message(err), Err: err}
	}
	if err != nil {
		return nil, err
	}
	// The Host's forwarding rule, as for blocks: its default storage for
	// token-file and API principals, 403 when it does not serve the key's.
	if id, err = applyRule(r, id); err != nil {
		return nil, err
	}
	return &APICaller{Identity: id, token: token, host: r.Host}, nil
}

// CanSign reports whether the gateway holds the blob signing key (the API
// signs every manifest it returns).
func (g *Gateway) CanSign() bool { return g.signer != nil }

// SignatureTTL is the lifetime of the signatures the gateway makes.
func (g *Gateway) SignatureTTL() time.Duration { return g.opt.SignatureTTL }

// DefaultReplicas is the proxy's default replica count.
func (g *Gateway) DefaultReplicas() int { return g.opt.DefaultReplicas }

// StorageOf returns the storage the caller's principal uses (nil: the
// default storage).
func (g *Gateway) StorageOf(c *APICaller) (Storage, error) {
	var id *Identity
	if c != nil {
		id = c.Identity
	}
	return g.storageOf(id)
}

// SignFor signs loc for the caller, as a PUT by it would (access keys: for
// the key's uid, expiring no later than the key), expiring at now + the
// signature TTL or notAfter, whichever is earlier (zero notAfter: no
// bound). It needs CanSign.
func (g *Gateway) SignFor(c *APICaller, loc blockstore.Locator, notAfter time.Time) blockstore.Locator {
	exp := time.Now().Add(g.signer.TTL)
	who := c.token
	if g.keySigned(c.Identity) {
		who = c.Identity.UID
		if !c.Identity.Expires.IsZero() && c.Identity.Expires.Before(exp) {
			exp = c.Identity.Expires
		}
	}
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter
	}
	return g.signer.SignUntil(loc, who, exp)
}

// VerifyFor checks loc's signature for the caller (access keys: for the
// key's uid; others: for the token they presented). It fails with the
// signer's kinds (no, malformed or wrong signature: KindInvalidSignature;
// expired: KindExpiredSignature).
func (g *Gateway) VerifyFor(c *APICaller, loc blockstore.Locator) error {
	if g.keySigned(c.Identity) {
		return g.signer.Verify(loc, c.Identity.UID)
	}
	return g.signer.Verify(loc, c.token)
}

// CheckBlock checks that the block of loc (signed for the caller) is in
// the caller's storage, with a HEAD through the same routing, isolation
// and store-slot shares as a client's HEAD: nil when a store has it,
// KindNotFound when none of the storage's stores has it, the stores'
// other answers as for a HEAD.
func (g *Gateway) CheckBlock(ctx context.Context, c *APICaller, loc blockstore.Locator) error {
	if loc.Hash == blockstore.EmptyHash {
		return nil
	}
	req := GetRequest{Locator: loc, Token: c.token, Identity: c.Identity, Host: c.host, Head: true}
	if err := g.toStores(&req); err != nil {
		return err
	}
	release, err := g.admitRead(ctx, c.Identity, true)
	if err != nil {
		return err
	}
	defer release()
	blk, err := g.Open(ctx, req)
	if err != nil {
		return err
	}
	return blk.Close()
}
