// Package access decides who a caller is. It holds what access keys are
// made of: their ids and secrets, how a secret is kept (a keyed hash,
// never the secret), and how a credential is read from a request —
// `Bearer|OAuth2 v2/<id>/<secret>` (so an access key works as an Arvados
// API token) or `Basic base64(id:secret)` (what `curl -u id:secret`
// sends), both normalised to the same token before anything else looks at
// it. And it resolves a token to an Identity (the principal, with its
// scopes and storage) through Authenticators: AccessKeys over the shared
// state, a TokenFile, RemoteAuth against an Arvados API server, a TTL
// Cache in front, and a Chain of them in which a FinalRefusal is final.
package access

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// IDPattern is what an id chosen by the admin may look like: no '/', '@',
// '+' or spaces, which split tokens and signature fields.
var idRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{2,62}$`)

// ValidID reports whether id may name an access key; the error says why not.
func ValidID(id string) error {
	if !idRe.MatchString(id) {
		return fmt.Errorf("access key id %q: use 3-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit (no '/', '@', '+' or spaces)", id)
	}
	return nil
}

const alnum = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand)
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)] // 256 % 36 bias is irrelevant at this length
	}
	return string(b)
}

// NewID generates an id in Arvados UUID shape: <cluster>-akey1-<15 chars>.
func NewID(cluster string) string { return cluster + "-akey1-" + randomString(15) }

// NewUID generates a key's immutable uid (locators are signed for it).
func NewUID() string { return randomString(32) }

// NewSecret generates a secret: 50 characters of [a-z0-9].
func NewSecret() string { return randomString(50) }

// ValidSecret checks a secret supplied by the admin: 32-128 printable
// ASCII characters, no spaces.
func ValidSecret(s string) error {
	if len(s) < 32 || len(s) > 128 {
		return fmt.Errorf("secret: use 32 to 128 characters (got %d), or leave it out to have one generated", len(s))
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return errors.New("secret: use printable ASCII characters without spaces")
		}
	}
	return nil
}

// Hasher keeps secrets as HMAC-SHA256 under a pepper that lives outside
// the database (a file), so a stolen database reveals no usable secret.
// Not bcrypt or argon2: secrets are high-entropy, and a verify sits on
// the request path.
type Hasher struct{ Pepper []byte }

// Hash returns the keyed hash of secret.
func (h Hasher) Hash(secret string) []byte {
	m := hmac.New(sha256.New, h.Pepper)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// Matches reports, in constant time, whether secret hashes to want.
func (h Hasher) Matches(secret string, want []byte) bool {
	return len(want) > 0 && hmac.Equal(h.Hash(secret), want)
}

// Token returns the token form of a key credential: v2/<id>/<secret>.
func Token(id, secret string) string { return "v2/" + id + "/" + secret }

// ParseToken splits a v2/<id>/<secret> token. ok is false for any other
// shape (which another authenticator may know, e.g. a token-file entry).
func ParseToken(token string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(token, "v2/")
	if !found {
		return "", "", false
	}
	id, secret, found = strings.Cut(rest, "/")
	if !found || id == "" || secret == "" || strings.Contains(secret, "/") {
		return "", "", false
	}
	return id, secret, true
}

// ErrMalformedBasic: a Basic credential that is not base64(id:secret).
var ErrMalformedBasic = errors.New("malformed Basic credential")

// FromAuthorization reads the credential of an Authorization header
// value: the token of `Bearer T` or `OAuth2 T`, or `v2/ID/SECRET` for
// `Basic base64(ID:SECRET)`. It returns "" with a nil error when the
// header carries no credential it knows, and ErrMalformedBasic for a
// Basic value without a colon or not in base64 (which must be refused,
// not passed on).
func FromAuthorization(h string) (string, error) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	rest = strings.TrimSpace(rest)
	switch {
	case scheme == "Bearer" || scheme == "OAuth2":
		return rest, nil
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", ErrMalformedBasic
		}
		id, secret, ok := strings.Cut(string(raw), ":")
		if !ok || id == "" || secret == "" {
			return "", ErrMalformedBasic
		}
		return Token(id, secret), nil
	}
	return "", nil
}
