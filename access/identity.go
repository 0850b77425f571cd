package access

import "time"

// Scope is one permission a token can carry.
type Scope string

// Scopes enforced by the gateway.
const (
	ScopeRead  Scope = "read"  // GET, HEAD
	ScopeWrite Scope = "write" // PUT, POST
	ScopeAdmin Scope = "admin" // /index
)

// Identity is what a token resolves to.
type Identity struct {
	Name   string // for logs and usage reports; never the token
	Scopes []Scope
	// Source names the authenticator that accepted the token:
	// "token-file", "api" or "access-key".
	Source string
	// Storage is the one storage an access key is bound to ("" for the
	// other sources: they use the default storage).
	Storage string
	// UID is an access key's immutable uid: the locators keepproxy signs
	// for the key are signed for it, not for the secret.
	UID string
	// Expires: an access key's expiry (zero: none); the locators signed
	// for the key expire no later.
	Expires time.Time
	// NoAudit: the key's configuration.server.activity_event_logging is
	// off, so its transfers are not written to the audit log.
	NoAudit bool
}

// Has reports whether the identity carries scope s (admin implies all).
func (id *Identity) Has(s Scope) bool {
	for _, x := range id.Scopes {
		if x == s || x == ScopeAdmin {
			return true
		}
	}
	return false
}
