package gateway

import (
	"time"

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
func (g *Gateway) keySigned(id *Identity) bool {
	return id != nil && id.UID != "" && g.signer != nil && g.opt.StoreWriteToken != ""
}

// signForCaller signs loc for the caller of a PUT: for an access key, for
// its UID, expiring no later than the key; else for the caller's token.
func (g *Gateway) signForCaller(loc blockstore.Locator, id *Identity, token string) blockstore.Locator {
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
