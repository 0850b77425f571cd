// Package keepwire is the one home of the Keep protocol's HTTP surface
// (KEEP-PROTOCOL.md): the X-Keep-* header names, the CORS values of §7, the
// Range rule, the storage-classes header syntax and the retry rule
// (RetryableStatus). Servers (keepstore,
// keepproxy) and clients (the proxy toward its stores, keepclient,
// keepbench) use these names and parsers, so a header is spelled once; `make
// lint` fails when an X-Keep-* literal appears anywhere else.
package keepwire

import (
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// Header names.
const (
	DesiredReplicas         = "X-Keep-Desired-Replicas"
	ReplicasStored          = "X-Keep-Replicas-Stored"
	StorageClasses          = "X-Keep-Storage-Classes"
	StorageClassesConfirmed = "X-Keep-Storage-Classes-Confirmed"
	Signature               = "X-Keep-Signature"
	LocatorHeader           = "X-Keep-Locator"
	// DataVerified on a GET response (200 or 206) is keepstore's promise
	// (relayed by a keepgate keepproxy streaming such a store's answer),
	// with value VerifiedChunks, that every byte of the body is checked
	// against its chunk's CRC32C right before it is sent (a bad chunk
	// ends the body short instead). Earlier keepstores sent "md5" for a
	// whole-block check made before the first byte, on another read of
	// the file than the one sent: keepproxy no longer trusts that.
	DataVerified   = "X-Keep-Data-Verified"
	VerifiedChunks = "crc32c"
	// ChunkChecksums is the PUT trailer in which keepproxy (with its store
	// write token) sends the chunk checksums of a body whose MD5 it has
	// checked (blockstore.Checksums.EncodeText); a keepstore then checks
	// them instead of hashing MD5 again. Keepstores that do not know it
	// ignore it.
	ChunkChecksums = "X-Keep-Chunk-Checksums"
	RequestID      = "X-Request-Id"
)

// CORS values of KEEP-PROTOCOL §7, byte for byte.
const (
	CORSAllowMethods  = "GET, HEAD, PUT, OPTIONS, POST"
	CORSAllowHeaders  = "Authorization, Content-Length, Content-Type, " + DesiredReplicas + ", " + Signature + ", " + StorageClasses
	CORSExposeHeaders = LocatorHeader + ", " + ReplicasStored + ", " + StorageClassesConfirmed
	CORSMaxAge        = "86486400"
	CORSMaxAgeSeconds = 86486400
)

// ParseConfirmed parses an X-Keep-Storage-Classes-Confirmed value
// ("default=2, archive=1"); a malformed value yields an empty map.
func ParseConfirmed(v string) map[string]int {
	out := map[string]int{}
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, n, ok := strings.Cut(part, "=")
		if !ok {
			return map[string]int{}
		}
		c, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || c < 0 {
			return map[string]int{}
		}
		out[strings.TrimSpace(k)] += c
	}
	return out
}

// FormatConfirmed formats class counts, sorted by class.
func FormatConfirmed(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Itoa(m[k])
	}
	return strings.Join(parts, ", ")
}

// ParseDesiredReplicas reads X-Keep-Desired-Replicas: a positive number, or
// def when the header is missing, zero, negative or not a number (a PUT is
// never answered 200 for a block that was not stored).
func ParseDesiredReplicas(v string, def int) int {
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
		return n
	}
	return def
}

// ParseReplicasStored reads X-Keep-Replicas-Stored; ok is false when the
// header is missing or malformed.
func ParseReplicasStored(v string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	return n, err == nil && n >= 0 && v != ""
}

// ByteRange is an inclusive byte range [From, To] (To < 0: to the end;
// From < 0: the last -From bytes, resolved once the size is known).
type ByteRange struct{ From, To int64 }

// ParseRange accepts a single "bytes=a-b", "bytes=a-" or "bytes=-n"
// (KindBadRange otherwise).
func ParseRange(v string) (*ByteRange, error) {
	bad := blockstore.Errorf(blockstore.KindBadRange, "unsupported Range %q: use a single bytes=first-last range", v)
	spec, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	if !ok || strings.Contains(spec, ",") {
		return nil, bad
	}
	a, b, ok := strings.Cut(spec, "-")
	if !ok {
		return nil, bad
	}
	if a == "" { // suffix: last n bytes; resolved once the size is known
		n, err := strconv.ParseInt(b, 10, 64)
		if err != nil || n <= 0 {
			return nil, bad
		}
		return &ByteRange{From: -n, To: -1}, nil
	}
	from, err := strconv.ParseInt(a, 10, 64)
	if err != nil || from < 0 {
		return nil, bad
	}
	to := int64(-1)
	if b != "" {
		if to, err = strconv.ParseInt(b, 10, 64); err != nil || to < from {
			return nil, bad
		}
	}
	return &ByteRange{From: from, To: to}, nil
}

// NormalizeHost is the form a Host header is matched in (forwarding
// rules, audit events): lower case, without the port and a trailing dot,
// an IPv6 literal without brackets ("Keep.Example.org.:443" →
// "keep.example.org", "[::1]:25107" → "::1").
func NormalizeHost(h string) string {
	h = strings.TrimSpace(h)
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.TrimSuffix(strings.ToLower(strings.Trim(h, "[]")), ".")
}

// Resolve applies r to a representation of size bytes: the offset and
// length of the bytes it selects. A suffix range (From < 0) selects the
// last -From bytes, or all of them when there are fewer; a range whose
// first byte is at or past the end is KindBadRange (416, unsatisfiable:
// RFC 9110 §14.1.1); To past the end means to the end.
func (r ByteRange) Resolve(size int64) (off, n int64, err error) {
	if r.From < 0 {
		n = min(-r.From, size)
		return size - n, n, nil
	}
	if r.From >= size {
		return 0, 0, blockstore.Errorf(blockstore.KindBadRange, "requested range not satisfiable: it starts at byte %d of a %d-byte block", r.From, size)
	}
	last := size - 1
	if r.To >= 0 {
		last = min(r.To, last)
	}
	return r.From, last - r.From + 1, nil
}

// IsZeroSuffix reports whether v asks for the last zero bytes
// ("bytes=-0"): a well-formed range that no representation satisfies
// (RFC 9110 §14.1.1), which ParseRange refuses like a malformed value. A
// server that ignores malformed Range headers answers this one 416.
func IsZeroSuffix(v string) bool {
	spec, ok := strings.CutPrefix(strings.TrimSpace(v), "bytes=")
	a, b, dash := strings.Cut(spec, "-")
	n, err := strconv.ParseInt(b, 10, 64)
	return ok && dash && a == "" && err == nil && n == 0
}

// RetryableStatus is the one retry rule of the protocol (KEEP-PROTOCOL
// §8.4): an answer of 408, 429 or 5xx other than 507 (full or read-only:
// trying again will not make room) may succeed on another try, or on
// another store.
func RetryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests ||
		code >= 500 && code != http.StatusInsufficientStorage
}
