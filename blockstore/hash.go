package blockstore

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
)

// Hash is the MD5 digest that names a block. It is comparable and usable as
// a map key; parse it once at the edge with ParseHash.
type Hash [md5.Size]byte

// EmptyHash names the zero-length block.
var EmptyHash = Hash(md5.Sum(nil))

// EmptyLocator is the canonical locator of the zero-length block.
const EmptyLocator = "d41d8cd98f00b204e9800998ecf8427e+0"

// ParseHash parses exactly 32 lowercase hex digits.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if !isHash(s) {
		return h, Errorf(KindInvalidLocator, "invalid locator: %q is not 32 lowercase hex digits", truncate(s, 40))
	}
	_, _ = hex.Decode(h[:], []byte(s))
	return h, nil
}

// HashOf returns the MD5 of data.
func HashOf(data []byte) Hash { return Hash(md5.Sum(data)) }

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero value (not the empty block's hash).
func (h Hash) IsZero() bool { return h == Hash{} }

func isHash(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < 32; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// IsHexPrefix reports whether s is 0–32 lowercase hex digits (an index prefix).
func IsHexPrefix(s string) bool {
	if len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// CheckIndexPrefix returns a KindBadRequest error (for operation op) unless
// prefix is 0–32 lowercase hex digits.
func CheckIndexPrefix(op, prefix string) error {
	if IsHexPrefix(prefix) {
		return nil
	}
	return E(op, KindBadRequest, "invalid index prefix "+strconv.Quote(truncate(prefix, 40))+": it must be 0 to 32 lowercase hex digits")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
