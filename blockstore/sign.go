package blockstore

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// Signer makes and checks permission signatures (KEEP-PROTOCOL §3):
// hex(HMAC-SHA1(Key, hash "@" token "@" expiry8hex "@" ttlhex)).
type Signer struct {
	Key []byte
	TTL time.Duration
	Now func() time.Time // nil means time.Now
}

func (s *Signer) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Signature computes the 40-hex signature for hash, token and expiry hex.
func (s *Signer) Signature(h Hash, token, expiryHex string) string {
	mac := hmac.New(sha1.New, s.Key)
	fmt.Fprintf(mac, "%s@%s@%s@%s", h, token, expiryHex, strconv.FormatInt(int64(s.TTL/time.Second), 16))
	return hex.EncodeToString(mac.Sum(nil))
}

// Sign returns loc (any previous A hint removed) with a fresh +A hint
// valid until now+TTL for token.
func (s *Signer) Sign(loc Locator, token string) Locator {
	return s.SignUntil(loc, token, s.now().Add(s.TTL))
}

// SignUntil signs with an explicit expiry.
func (s *Signer) SignUntil(loc Locator, token string, expiry time.Time) Locator {
	out := loc.WithoutHint('A')
	exp := fmt.Sprintf("%08x", expiry.Unix())
	out.Hints = append(out.Hints, "A"+s.Signature(loc.Hash, token, exp)+"@"+exp)
	return out
}

// Verify checks loc's signature for token. Failures, in the order checked:
// no token → KindNoToken (401); no well-formed single A hint, or other
// hints not of the form [B-Z][A-Za-z0-9@_-]* → KindInvalidSignature (400);
// expiry in the past → KindExpiredSignature (401); HMAC mismatch →
// KindInvalidSignature (400). The comparison is constant-time.
func (s *Signer) Verify(loc Locator, token string) error {
	if token == "" {
		return Errorf(KindNoToken, "no token provided in Authorization header")
	}
	var sig, exp string
	n := 0
	for _, h := range loc.Hints {
		if h[0] == 'A' {
			n++
			if len(h) != 1+40+1+8 || h[41] != '@' || !isLowerHex(h[1:41]) || !isLowerHex(h[42:]) {
				return Errorf(KindInvalidSignature, "invalid signature: malformed +A hint")
			}
			sig, exp = h[1:41], h[42:]
			continue
		}
		if h[0] < 'B' || h[0] > 'Z' || !validHintBody(h[1:]) {
			return Errorf(KindInvalidSignature, "invalid signature: unexpected hint %q", truncate(h, 20))
		}
	}
	if n != 1 {
		return Errorf(KindInvalidSignature, "invalid signature: the locator must carry exactly one +A signature")
	}
	expUnix, _ := strconv.ParseInt(exp, 16, 64)
	if expUnix < s.now().Unix() {
		return Errorf(KindExpiredSignature, "expired signature: get a freshly signed locator")
	}
	want := s.Signature(loc.Hash, token, exp)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return Errorf(KindInvalidSignature, "invalid signature: not valid for this token")
	}
	return nil
}

// SignatureExpiry returns the expiry of loc's A hint, if it has a well-formed one.
func SignatureExpiry(loc Locator) (time.Time, bool) {
	a, ok := loc.Hint('A')
	if !ok || len(a) != 40+1+8 || a[40] != '@' {
		return time.Time{}, false
	}
	n, err := strconv.ParseInt(a[41:], 16, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func validHintBody(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '@' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
