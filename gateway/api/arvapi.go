package gatewayapi

import (
	"context"
	"net/http"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/placement"
)

// What the Arvados API (package arvapi, mounted through Options.API) needs
// from keepproxy: the same authentication, signatures, storages and
// block look-ups as the block routes, so a collection is isolated exactly
// as its blocks are.

// APICaller is an authenticated caller of the Arvados API: its principal
// and the token it presented (kept here, never shown: token-file
// principals' locators are signed for it).
type APICaller struct {
	Identity *access.Identity
	token    string
	host     string // the Host the request named (routing)
}

// Authenticate resolves the request's credential (Authorization Bearer or
// OAuth2 token, Basic id:secret, else the api_token query parameter) to a
// principal. No credential: KindNoToken (401). A credential the
// authenticators refuse: also 401 (Arvados' answer to a bad token), with
// the refusal's message. Other failures (state or API server down) keep
// their kind. The request's forwarding rule applies as on the block routes.
func (s *Server) Authenticate(r *http.Request) (*APICaller, error) {
	token, err := access.FromAuthorization(r.Header.Get("Authorization"))
	if err != nil {
		return nil, &blockstore.Error{Kind: blockstore.KindNoToken, Msg: "Not logged in: " + blockstore.Message(access.ErrBadToken)}
	}
	if token == "" {
		token = r.URL.Query().Get("api_token")
	}
	if token == "" {
		return nil, &blockstore.Error{Kind: blockstore.KindNoToken, Msg: "Not logged in: send 'Authorization: Bearer <token>' (an access key as v2/<id>/<secret>)"}
	}
	id, err := s.auth.Authenticate(r.Context(), token)
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

// CanSign reports whether keepproxy holds the blob signing key (the API
// signs every manifest it returns).
func (s *Server) CanSign() bool { return s.gw.CanSign() }

// DefaultReplicas is the proxy's default replica count.
func (s *Server) DefaultReplicas() int { return s.opt.DefaultReplicas }

// StorageOf returns the storage the caller's principal uses (nil: the
// default storage).
func (s *Server) StorageOf(c *APICaller) (placement.Storage, error) {
	var id *access.Identity
	if c != nil {
		id = c.Identity
	}
	return s.gw.StorageOf(id)
}

// SignFor signs loc for the caller, as a PUT by it would (access keys: for
// the key's uid, expiring no later than the key), expiring at now + the
// signature TTL or notAfter, whichever is earlier (zero notAfter: no
// bound). It needs CanSign.
func (s *Server) SignFor(c *APICaller, loc blockstore.Locator, notAfter time.Time) blockstore.Locator {
	return s.gw.SignFor(c.Identity, c.token, loc, notAfter)
}

// VerifyFor checks loc's signature for the caller (access keys: for the
// key's uid; others: for the token they presented). It fails with the
// signer's kinds (no, malformed or wrong signature: KindInvalidSignature;
// expired: KindExpiredSignature).
func (s *Server) VerifyFor(c *APICaller, loc blockstore.Locator) error {
	return s.gw.VerifyFor(c.Identity, c.token, loc)
}

// CheckBlock checks that the block of loc (signed for the caller) is in
// the caller's storage, with a HEAD through the same routing, isolation
// and store-slot shares as a client's HEAD: nil when a store has it,
// KindNotFound when none of the storage's stores has it, the stores'
// other answers as for a HEAD.
func (s *Server) CheckBlock(ctx context.Context, c *APICaller, loc blockstore.Locator) error {
	return s.gw.CheckBlock(ctx, gateway.GetRequest{Locator: loc, Token: c.token, Identity: c.Identity, Host: c.host, Head: true})
}
