package dirvolume

import (
	"strconv"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// File name grammar; see the package doc.
const (
	zstInfix   = ".zst."
	trashInfix = ".trash."
	tmpPrefix  = ".tmp-"
	// sumsSuffix names a block's chunk-checksum sidecar: H.crc32c.
	sumsSuffix = ".crc32c"
)

// sumsName is the sidecar file of the block hash (32 hex), inside the root.
func sumsName(hash string) string { return join(subdir(hash), hash+sumsSuffix) }

// isSumsName reports whether name (an entry of a subdirectory) is a
// sidecar, and of which hash.
func isSumsName(name string) (string, bool) {
	if len(name) == 32+len(sumsSuffix) && name[32:] == sumsSuffix && blockstore.IsHexPrefix(name[:32]) {
		return name[:32], true
	}
	return "", false
}

// fileName is a parsed entry of a hex subdirectory.
type fileName struct {
	hash     string // 32 lowercase hex digits
	zst      bool   // stored compressed
	size     int64  // uncompressed size of a compressed file; -1 for raw files
	trash    bool
	deadline int64 // Unix seconds after which EmptyTrash deletes it
}

// parseName parses a block or trash file name; ok is false for anything else
// (temp files, Arvados temp files, stray files).
func parseName(s string) (n fileName, ok bool) {
	if len(s) < 32 || !blockstore.IsHexPrefix(s[:32]) {
		return n, false
	}
	n.hash, n.size = s[:32], -1
	rest := s[32:]
	if strings.HasPrefix(rest, zstInfix) {
		rest = rest[len(zstInfix):]
		end := strings.IndexByte(rest, '.')
		if end < 0 {
			end = len(rest)
		}
		size, ok := parseCanonicalSize(rest[:end])
		if !ok {
			return n, false
		}
		n.zst, n.size = true, size
		rest = rest[end:]
	}
	if rest == "" {
		return n, true
	}
	if !strings.HasPrefix(rest, trashInfix) {
		return n, false
	}
	d := rest[len(trashInfix):]
	if d == "" || strings.Trim(d, "0123456789") != "" {
		return n, false
	}
	deadline, err := strconv.ParseInt(d, 10, 64)
	if err != nil {
		return n, false
	}
	n.trash, n.deadline = true, deadline
	return n, true
}

// parseCanonicalSize accepts a decimal block size without leading zeros, at
// most MaxBlockSize, so that every size has exactly one spelling.
func parseCanonicalSize(s string) (int64, bool) {
	if s == "" || len(s) > 1 && s[0] == '0' || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v > blockstore.MaxBlockSize {
		return 0, false
	}
	return v, true
}

// live returns the name of the block file itself (no trash suffix).
func (n fileName) live() string {
	if n.zst {
		return n.hash + zstInfix + strconv.FormatInt(n.size, 10)
	}
	return n.hash
}

// String formats n back into a file name.
func (n fileName) String() string {
	if n.trash {
		return n.live() + trashInfix + strconv.FormatInt(n.deadline, 10)
	}
	return n.live()
}

// subdir is the hex subdirectory of a block: its first three hex digits.
func subdir(hash string) string { return hash[:3] }

// isSubdirName reports whether s is exactly three lowercase hex digits.
func isSubdirName(s string) bool { return len(s) == 3 && blockstore.IsHexPrefix(s) }

// join joins a subdirectory and a file name into a path inside the root.
func join(dir, name string) string { return dir + "/" + name }
