package gateway

import (
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
)

// Locators of access keys are signed by keepproxy for the key's immutable
// UID, never for its secret: a rotated secret keeps two weeks of manifests
// valid, a locator signed for key A is refused for key B, and a revoked
// key's locators die with it (the key no longer authenticates). The
// keepstores never see a key's secret: toward them keepproxy uses its own
// store write token, with the locator re-signed for it. This needs the
// blob signing key and the store write token (config validation requires
// both with access keys); other principals keep the wave-1 scheme
// (locators signed for the caller's token, which the stores check).

// keySigned reports whether id's locators are bound to its UID.
func (g *Gateway) keySigned(id *access.Identity) bool {
	return id != nil && id.UID != "" && g.signer != nil && g.opt.StoreWriteToken != ""
}

// signForCaller signs loc for the caller of a PUT: for an access key, for
// its UID, expiring no later than the key; else for the caller's token.
func (g *Gateway) signForCaller(loc blockstore.Locator, id *access.Identity, token string) blockstore.Locator {
	if !g.keySigned(id) {
		return g.signer.Sign(loc, token)
	}
	exp := time.Now().Add(g.signer.TTL)
	if !id.Expires.IsZero() && id.Expires.Before(exp) {
		exp = id.Expires
	}
	return g.signer.SignUntil(loc, id.UID, exp)
}

// toStores prepares an access key's GET for the stores: the locator's
// signature is checked for the key's UID (a failure answers what the
// stores would: 422, "keep stores refused the request"), then the locator
// is re-signed for the store write token, which is what the stores see.
func (g *Gateway) toStores(req *GetRequest) error {
	if !g.keySigned(req.Identity) {
		return nil
	}
	if err := g.signer.Verify(req.Locator, req.Identity.UID); err != nil {
		return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindUnprocessable, Msg: "keep stores refused the request: " + blockstore.Message(err), Err: err}
	}
	req.Locator = g.signer.Sign(req.Locator, g.opt.StoreWriteToken)
	req.Token = g.opt.StoreWriteToken
	return nil
}

// PrepareGet is the signature step of a GET before Open: for an upstream
// storage, toward the upstream (squashed: the caller's signature checked
// here, the upstream's own from the R hint sent with the service token);
// for an access key, the signature checked for the key's UID and the
// locator re-signed for the store write token. A signature that does not
// check out is KindUnprocessable (422), as a store's refusal. Other
// requests are left as they are.
func (g *Gateway) PrepareGet(req *GetRequest) error {
	if st, ok := g.upstreamOf(req.Identity); ok {
		return g.toUpstream(st, req)
	}
	return g.toStores(req)
}

// CanSign reports whether the gateway holds the blob signing key.
func (g *Gateway) CanSign() bool { return g.signer != nil }

// SignFor signs loc for a principal as a PUT by it would be signed (access
// keys: for the key's UID, expiring no later than the key; others: for
// the token they presented), expiring at now + the signature TTL or
// notAfter, whichever is earlier (zero notAfter: no bound). It needs
// CanSign.
func (g *Gateway) SignFor(id *access.Identity, token string, loc blockstore.Locator, notAfter time.Time) blockstore.Locator {
	exp := time.Now().Add(g.signer.TTL)
	who := token
	if g.keySigned(id) {
		who = id.UID
		if !id.Expires.IsZero() && id.Expires.Before(exp) {
			exp = id.Expires
		}
	}
	if !notAfter.IsZero() && notAfter.Before(exp) {
		exp = notAfter
	}
	return g.signer.SignUntil(loc, who, exp)
}

// VerifyFor checks loc's signature for a principal (access keys: for the
// key's UID; others: for the token they presented). It fails with the
// signer's kinds (no, malformed or wrong signature: KindInvalidSignature;
// expired: KindExpiredSignature). It needs CanSign.
func (g *Gateway) VerifyFor(id *access.Identity, token string, loc blockstore.Locator) error {
	if g.keySigned(id) {
		return g.signer.Verify(loc, id.UID)
	}
	return g.signer.Verify(loc, token)
}
