package blockstore

import (
	"strconv"
	"strings"
)

// Locator is a parsed block locator: hash, optional size, and hints in the
// order given (without their leading '+'). Size is -1 when absent.
type Locator struct {
	Hash  Hash
	Size  int64
	Hints []string
}

// ParseLocator accepts the keepstore grammar (KEEP-PROTOCOL §2.3): a bare
// 32-hex digest, digest+size, digest+size+hints, or digest+hints. It rejects
// a bad digest, empty input, empty parts (leading, trailing or doubled '+'),
// and a digit-leading part after the second position. A non-numeric second
// part means "no size" and is kept as a hint.
func ParseLocator(s string) (Locator, error) {
	loc := Locator{Size: -1}
	if len(s) < 32 {
		return loc, Errorf(KindInvalidLocator, "invalid locator %q: it must start with 32 lowercase hex digits", truncate(s, 80))
	}
	h, err := ParseHash(s[:32])
	if err != nil {
		return loc, Errorf(KindInvalidLocator, "invalid locator %q: it must start with 32 lowercase hex digits", truncate(s, 80))
	}
	loc.Hash = h
	rest := s[32:]
	if rest == "" {
		return loc, nil
	}
	if rest[0] != '+' {
		return loc, Errorf(KindInvalidLocator, "invalid locator %q: expected '+' after the hash", truncate(s, 80))
	}
	parts := strings.Split(rest[1:], "+")
	for i, p := range parts {
		if p == "" {
			return loc, Errorf(KindInvalidLocator, "invalid locator %q: empty hint", truncate(s, 80))
		}
		if p[0] >= '0' && p[0] <= '9' {
			if i != 0 {
				return loc, Errorf(KindInvalidLocator, "invalid locator %q: the size must be the first hint", truncate(s, 80))
			}
			n, err := strconv.ParseInt(p, 10, 64)
			if err != nil || n < 0 || !allDigits(p) {
				return loc, Errorf(KindInvalidLocator, "invalid locator %q: bad size %q", truncate(s, 80), truncate(p, 20))
			}
			loc.Size = n
			continue
		}
		loc.Hints = append(loc.Hints, p)
	}
	return loc, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// String is the canonical form: hash[+size][+hints…].
func (l Locator) String() string {
	var b strings.Builder
	b.Grow(32 + 12 + 60)
	b.WriteString(l.Hash.String())
	if l.Size >= 0 {
		b.WriteByte('+')
		b.WriteString(strconv.FormatInt(l.Size, 10))
	}
	for _, h := range l.Hints {
		b.WriteByte('+')
		b.WriteString(h)
	}
	return b.String()
}

// HasSize reports whether the locator carries a size hint.
func (l Locator) HasSize() bool { return l.Size >= 0 }

// Hint returns the first hint starting with letter c (without the letter).
func (l Locator) Hint(c byte) (string, bool) {
	for _, h := range l.Hints {
		if len(h) > 0 && h[0] == c {
			return h[1:], true
		}
	}
	return "", false
}

// WithoutHints returns hash+size with no hints.
func (l Locator) WithoutHints() Locator { return Locator{Hash: l.Hash, Size: l.Size} }

// WithoutHint returns a copy with every hint starting with c removed.
func (l Locator) WithoutHint(c byte) Locator {
	out := Locator{Hash: l.Hash, Size: l.Size}
	for _, h := range l.Hints {
		if h[0] != c {
			out.Hints = append(out.Hints, h)
		}
	}
	return out
}

// Signed reports whether the locator has an A (permission) hint.
func (l Locator) Signed() bool { _, ok := l.Hint('A'); return ok }
