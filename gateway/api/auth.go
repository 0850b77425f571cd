package gatewayapi

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/metering"
	"github.com/keepgate/keepgate/placement"
)

// checkLoop refuses a request that already passed through a keepproxy or
// this keepgate (KindLoop).
func (s *Server) checkLoop(r *http.Request) error {
	if s.gw.Loops(r.Header.Get("Via")) {
		return blockstore.Errorf(blockstore.KindLoop, "loop detected: this request already passed through a keepproxy")
	}
	return nil
}

// authorize checks the loop guard and the token's scope. It returns the
// token to forward to the stores and who it belongs to, and puts the
// principal on the request's transfer.
func (s *Server) authorize(r *http.Request, scope access.Scope) (string, *access.Identity, error) {
	if err := s.checkLoop(r); err != nil {
		return "", nil, err
	}
	// Bearer/OAuth2 tokens as they are; Basic id:secret as the access
	// key token v2/id/secret.
	token, err := access.FromAuthorization(r.Header.Get("Authorization"))
	if err != nil || token == "" {
		return "", nil, access.ErrBadToken
	}
	id, err := s.auth.Authenticate(r.Context(), token)
	if err != nil {
		if id = s.passThrough(r, token, err); id == nil {
			return "", nil, err
		}
	}
	if id, err = applyRule(r, id); err != nil {
		return "", nil, err
	}
	t := metering.From(r.Context())
	t.PrincipalKind, t.PrincipalID, t.NoAudit = id.Source, id.Name, id.NoAudit
	if id.Storage != "" {
		t.Storage = id.Storage
	} else {
		t.Storage = s.gw.DefaultStorage()
	}
	if !id.Has(scope) {
		return "", nil, &blockstore.Error{Kind: blockstore.KindForbidden, Msg: fmt.Sprintf("token %q may not %s (scopes: %v)", id.Name, scope, id.Scopes)}
	}
	return token, id, nil
}

// passThrough accepts a token keepgate does not know when the request
// would use an individual upstream storage (the rule's default storage,
// or the default storage): the upstream judges it. It returns nil
// otherwise (the refusal authErr stands).
func (s *Server) passThrough(r *http.Request, token string, authErr error) *access.Identity {
	if !blockstore.Is(authErr, blockstore.KindForbidden) {
		return nil
	}
	var final *access.FinalRefusal
	if errors.As(authErr, &final) {
		return nil
	}
	name := s.gw.DefaultStorage()
	if rule := ruleFrom(r.Context()); rule != nil {
		name = rule.DefaultStorage
	}
	st, err := s.gw.StorageOf(&access.Identity{Storage: name})
	if err != nil || st.Upstream == nil || st.Upstream.Identity != placement.IdentityIndividual {
		return nil
	}
	return &access.Identity{Name: "upstream-token-" + access.TokenID(token), Source: "upstream", Storage: st.Name, Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}}
}
