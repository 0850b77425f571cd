package access

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"

	"github.com/keepgate/keepgate/blockstore"
)

// Authenticator resolves an API token to an identity.
//
// Contract: an unknown, revoked or malformed token is an error of kind
// blockstore.KindForbidden; a failure to decide (e.g. the API server is
// down) is KindUnavailable or KindBadGateway. Implementations must be safe
// for concurrent use and must never log the token.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Identity, error)
}

// ErrBadToken is returned for unknown tokens.
var ErrBadToken = &blockstore.Error{Kind: blockstore.KindForbidden, Msg: "Missing or invalid Authorization header, or method not allowed: send 'Authorization: Bearer <token>' with a valid token"}

// TokenID is the safe form of a token for cache keys and logs: the first
// 12 hex digits of its SHA-256.
func TokenID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:6])
}

// FinalRefusal is a refusal no later authenticator may overturn: the
// credential was recognised (an access key's id with its right secret)
// but may not be used (revoked, disabled, expired). Its message may say
// why, since the caller proved it holds the secret.
type FinalRefusal struct{ Err *blockstore.Error }

func (f *FinalRefusal) Error() string { return f.Err.Error() }
func (f *FinalRefusal) Unwrap() error { return f.Err }

// Chain tries authenticators in order; the first that accepts the token
// wins. If none accepts it and one could not decide, that failure is
// returned; otherwise ErrBadToken.
type Chain []Authenticator

// Authenticate implements Authenticator.
func (c Chain) Authenticate(ctx context.Context, token string) (*Identity, error) {
	var undecided error
	for _, a := range c {
		id, err := a.Authenticate(ctx, token)
		if err == nil {
			return id, nil
		}
		var final *FinalRefusal
		if errors.As(err, &final) {
			return nil, err
		}
		if !blockstore.Is(err, blockstore.KindForbidden) && undecided == nil {
			undecided = err
		}
	}
	if undecided != nil {
		return nil, undecided
	}
	return nil, ErrBadToken
}
