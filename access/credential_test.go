package access

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestFromAuthorization(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		h, want string
		bad     bool
	}{
		{"Bearer v2/zzzzz-akey1-abc/sekrit", "v2/zzzzz-akey1-abc/sekrit", false},
		{"OAuth2 plain-token", "plain-token", false},
		{"Basic " + b64("lab-a:s3cr3t:with:colons"), "v2/lab-a/s3cr3t:with:colons", false},
		{"basic " + b64("lab-a:x"), "v2/lab-a/x", false},
		{"Basic " + b64("no-colon"), "", true},
		{"Basic " + b64(":secret"), "", true},
		{"Basic !!!", "", true},
		{"Digest abc", "", false},
		{"", "", false},
	} {
		got, err := FromAuthorization(tc.h)
		if got != tc.want || (err != nil) != tc.bad {
			t.Errorf("%q: %q %v, want %q bad=%v", tc.h, got, err, tc.want, tc.bad)
		}
	}
}

func TestIDsAndSecrets(t *testing.T) {
	for _, id := range []string{"lab-a", "zzzzz-akey1-0123456789abcde", "a.b_c"} {
		if err := ValidID(id); err != nil {
			t.Errorf("%q: %v", id, err)
		}
	}
	for _, id := range []string{"ab", "Lab", "a/b", "a@b", "a+b", "a b", "-ab", strings.Repeat("a", 64)} {
		if ValidID(id) == nil {
			t.Errorf("%q accepted", id)
		}
	}
	if id := NewID("zzzzz"); len(id) != 27 || ValidID(id) != nil {
		t.Errorf("NewID: %q", id)
	}
	if s := NewSecret(); len(s) != 50 || ValidSecret(s) != nil {
		t.Errorf("NewSecret: %q", s)
	}
	if ValidSecret(strings.Repeat("x", 31)) == nil || ValidSecret(strings.Repeat("x", 31)+" ") == nil || ValidSecret(strings.Repeat("x", 129)) == nil {
		t.Error("weak or bad secret accepted")
	}
	h := Hasher{Pepper: []byte("pepper")}
	if !h.Matches("s", h.Hash("s")) || h.Matches("t", h.Hash("s")) || h.Matches("s", nil) || (Hasher{Pepper: []byte("other")}).Matches("s", h.Hash("s")) {
		t.Error("Hasher")
	}
}

// Credential parsing never panics, and whatever it returns for a Basic
// header is a v2 key token.
func FuzzFromAuthorization(f *testing.F) {
	for _, s := range []string{"Bearer x", "Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), "Basic", "OAuth2  ", "Basic ===", "v2/a/b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := FromAuthorization(h)
		if err != nil && tok != "" {
			t.Fatalf("%q: token %q with error %v", h, tok, err)
		}
		scheme, _, _ := strings.Cut(strings.TrimSpace(h), " ")
		if strings.EqualFold(scheme, "Basic") && err == nil {
			if _, _, ok := ParseToken(tok); !ok && !strings.Contains(tok[3:], "/") {
				t.Fatalf("%q: Basic gave %q, not a v2 token", h, tok)
			}
		}
		ParseToken(tok)
	})
}
