// Package manifest parses and formats Arvados manifest text
// (KEEP-PROTOCOL §12.1): one line per stream,
//
//	<stream name> <locator>... <pos>:<len>:<file name>...\n
//
// where the locators of a stream are read as one concatenated byte stream
// and each file segment names a range of it (a range may cross block
// boundaries). Names escape backslash, ':' and the bytes 0x00–0x20 as a
// backslash and three octal digits. A file name may contain '/' (a file
// in a subdirectory of the stream), and an empty file named "." marks an
// empty directory (written "\056", as the Arvados SDKs do).
//
// Two views are offered: Manifest, the text's own structure (streams,
// locators, segments), which Parse and Format round-trip exactly; and
// File, the tree it describes (a path and the block ranges holding its
// bytes), which Files and FromFiles convert to and from. FromFiles writes
// the normalised form: one stream per directory, streams and files
// sorted, each block listed at most once per stream.
package manifest

import (
	"crypto/md5"
	"fmt"
	"strconv"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// Manifest is parsed manifest text: its streams in text order.
type Manifest struct {
	Streams []Stream
}

// Stream is one line of a manifest.
type Stream struct {
	// Name is the unescaped stream name: "." or "./dir/sub".
	Name string
	// Blocks are the stream's locators, in order; every one has a size.
	Blocks []blockstore.Locator
	// Segments are the file tokens, in order.
	Segments []Segment
}

// Segment is one pos:len:name token: Len bytes at Pos of the stream's
// concatenated blocks belong to the file Name (unescaped; it may contain
// '/'; "." with Len 0 marks the stream's directory as existing).
type Segment struct {
	Pos, Len int64
	Name     string
}

// DirMarker is the file name that marks an empty directory.
const DirMarker = "."

// Size is the total length of the stream's blocks.
func (s *Stream) Size() int64 {
	var n int64
	for _, b := range s.Blocks {
		n += b.Size
	}
	return n
}

func errorf(format string, args ...any) error {
	return blockstore.Errorf(blockstore.KindBadRequest, "invalid manifest: "+format, args...)
}

// Parse reads manifest text. It is strict: every line ends in '\n',
// tokens are separated by exactly one space, every stream has at least one
// locator (with a size) followed by at least one file token, escapes are
// exactly three octal digits, names have no empty, "." or ".." parts, and
// every segment lies inside its stream. The empty string is the empty
// manifest.
func Parse(text string) (*Manifest, error) {
	m := &Manifest{}
	if text == "" {
		return m, nil
	}
	if text[len(text)-1] != '\n' {
		return nil, errorf("it does not end with a newline")
	}
	lineNo := 0
	for rest := text; rest != ""; {
		lineNo++
		i := strings.IndexByte(rest, '\n')
		line := rest[:i]
		rest = rest[i+1:]
		s, err := parseStream(line)
		if err != nil {
			return nil, errorf("line %d: %s", lineNo, err)
		}
		m.Streams = append(m.Streams, s)
	}
	return m, nil
}

func parseStream(line string) (Stream, error) {
	var s Stream
	if line == "" {
		return s, fmt.Errorf("empty line (missing stream name)")
	}
	toks := strings.Split(line, " ")
	for i, t := range toks {
		if t == "" {
			switch {
			case i == 0:
				return s, fmt.Errorf("missing stream name (line starts with a space)")
			case i == len(toks)-1:
				return s, fmt.Errorf("trailing space")
			default:
				return s, fmt.Errorf("two spaces in a row after token %d", i)
			}
		}
	}
	name, err := unescapeToken(toks[0])
	if err != nil {
		return s, fmt.Errorf("stream name %q: %s", trunc(toks[0]), err)
	}
	if err := checkStreamName(name); err != nil {
		return s, fmt.Errorf("stream name %q: %s", trunc(toks[0]), err)
	}
	s.Name = name
	var total int64
	i := 1
	for ; i < len(toks) && looksLikeLocator(toks[i]); i++ {
		loc, err := parseManifestLocator(toks[i])
		if err != nil {
			return s, err
		}
		if total > maxInt64-loc.Size {
			return s, fmt.Errorf("stream size overflows")
		}
		total += loc.Size
		s.Blocks = append(s.Blocks, loc)
	}
	if len(s.Blocks) == 0 {
		if i < len(toks) {
			return s, fmt.Errorf("missing or invalid locator %q", trunc(toks[i]))
		}
		return s, fmt.Errorf("missing locator")
	}
	if i == len(toks) {
		return s, fmt.Errorf("no file tokens")
	}
	for ; i < len(toks); i++ {
		seg, err := parseSegment(toks[i])
		if err != nil {
			return s, err
		}
		if seg.Pos > total || seg.Len > total-seg.Pos {
			return s, fmt.Errorf("file token %q is outside the stream's %d bytes", trunc(toks[i]), total)
		}
		s.Segments = append(s.Segments, seg)
	}
	return s, nil
}

const maxInt64 = int64(^uint64(0) >> 1)

// looksLikeLocator tells a locator token (32 hex digits, then '+' or
// nothing) from a file token (which has a ':' within its leading digits).
func looksLikeLocator(t string) bool {
	if len(t) < 32 || (len(t) > 32 && t[32] != '+') {
		return false
	}
	for i := 0; i < 32; i++ {
		c := t[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// parseManifestLocator applies the manifest locator rule of KEEP-PROTOCOL
// §2.1: digest, a mandatory size, then hints of the form [A-Z][-A-Za-z0-9@_]*.
func parseManifestLocator(t string) (blockstore.Locator, error) {
	loc, err := blockstore.ParseLocator(t)
	if err != nil {
		return loc, fmt.Errorf("invalid locator %q: %s", trunc(t), blockstore.Message(err))
	}
	if !loc.HasSize() {
		return loc, fmt.Errorf("locator %q has no size", trunc(t))
	}
	for _, h := range loc.Hints {
		if h[0] < 'A' || h[0] > 'Z' {
			return loc, fmt.Errorf("locator %q: hint %q does not start with an upper-case letter", trunc(t), trunc(h))
		}
		for j := 1; j < len(h); j++ {
			c := h[j]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '@' || c == '_') {
				return loc, fmt.Errorf("locator %q: bad character in hint %q", trunc(t), trunc(h))
			}
		}
	}
	return loc, nil
}

func parseSegment(t string) (Segment, error) {
	var seg Segment
	p1 := strings.IndexByte(t, ':')
	if p1 < 0 {
		return seg, fmt.Errorf("invalid file token %q (want pos:len:name)", trunc(t))
	}
	p2 := strings.IndexByte(t[p1+1:], ':')
	if p2 < 0 {
		return seg, fmt.Errorf("invalid file token %q (want pos:len:name)", trunc(t))
	}
	p2 += p1 + 1
	pos, err1 := parseDecimal(t[:p1])
	n, err2 := parseDecimal(t[p1+1 : p2])
	if err1 != nil || err2 != nil {
		return seg, fmt.Errorf("invalid file token %q: position and length must be decimal numbers", trunc(t))
	}
	raw := t[p2+1:]
	if raw == "" {
		return seg, fmt.Errorf("invalid file token %q: empty file name", trunc(t))
	}
	name, err := unescapeToken(raw)
	if err != nil {
		return seg, fmt.Errorf("invalid file token %q: %s", trunc(t), err)
	}
	if name == DirMarker {
		if n != 0 {
			return seg, fmt.Errorf("invalid file token %q: the directory marker \".\" must be empty", trunc(t))
		}
	} else if err := checkRelPath(name); err != nil {
		return seg, fmt.Errorf("invalid file token %q: %s", trunc(t), err)
	}
	return Segment{Pos: pos, Len: n, Name: name}, nil
}

func parseDecimal(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a digit")
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// checkStreamName: "." or "./" followed by a valid relative path.
func checkStreamName(name string) error {
	if name == "." {
		return nil
	}
	if !strings.HasPrefix(name, "./") {
		return fmt.Errorf("must be \".\" or start with \"./\"")
	}
	return checkRelPath(name[2:])
}

// checkRelPath: non-empty slash-separated parts, none "." or "..".
func checkRelPath(p string) error {
	if p == "" {
		return fmt.Errorf("empty name")
	}
	for part := range strings.SplitSeq(p, "/") {
		switch part {
		case "":
			return fmt.Errorf("empty path component")
		case ".", "..":
			return fmt.Errorf("%q path component", part)
		}
	}
	return nil
}

// ValidPath reports whether p is usable as a file path in a manifest: a
// relative slash-separated path with no empty, "." or ".." components.
func ValidPath(p string) error {
	if err := checkRelPath(p); err != nil {
		return errorf("path %q: %s", trunc(p), err)
	}
	return nil
}

// unescapeToken turns \ooo escapes back into bytes. A raw token may not
// hold bytes 0x00–0x20 (they are always escaped); a backslash must start
// exactly three octal digits of value at most 0377.
func unescapeToken(t string) (string, error) {
	if strings.IndexByte(t, '\\') < 0 {
		for i := 0; i < len(t); i++ {
			if t[i] <= 0x20 {
				return "", fmt.Errorf("unescaped control character or space")
			}
		}
		return t, nil
	}
	b := make([]byte, 0, len(t))
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c <= 0x20:
			return "", fmt.Errorf("unescaped control character or space")
		case c != '\\':
			b = append(b, c)
		case i+3 < len(t) && isOctal(t[i+1]) && isOctal(t[i+2]) && isOctal(t[i+3]):
			v := int(t[i+1]-'0')<<6 | int(t[i+2]-'0')<<3 | int(t[i+3]-'0')
			if v > 0377 {
				return "", fmt.Errorf("escape \\%s is over 8 bits", t[i+1:i+4])
			}
			b = append(b, byte(v))
			i += 3
		default:
			return "", fmt.Errorf("backslash not followed by three octal digits")
		}
	}
	return string(b), nil
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// Escape writes a name for a manifest token: backslash, ':' and bytes
// 0x00–0x20 become \ooo. The name "." is written "\056". Slashes are kept.
func Escape(name string) string {
	if name == DirMarker {
		return `\056`
	}
	need := false
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= 0x20 || c == '\\' || c == ':' {
			need = true
			break
		}
	}
	if !need {
		return name
	}
	var b strings.Builder
	b.Grow(len(name) + 8)
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c <= 0x20 || c == '\\' || c == ':' {
			b.WriteByte('\\')
			b.WriteByte('0' + c>>6)
			b.WriteByte('0' + (c>>3)&7)
			b.WriteByte('0' + c&7)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Unescape is the inverse of Escape for one token.
func Unescape(token string) (string, error) {
	s, err := unescapeToken(token)
	if err != nil {
		return "", errorf("%q: %s", trunc(token), err)
	}
	return s, nil
}

// Format writes the manifest text; Parse(m.Format()) gives m back.
func (m *Manifest) Format() string {
	var b strings.Builder
	for _, s := range m.Streams {
		if s.Name == "." {
			b.WriteByte('.')
		} else {
			b.WriteString(Escape(s.Name))
		}
		for _, l := range s.Blocks {
			b.WriteByte(' ')
			b.WriteString(l.String())
		}
		for _, seg := range s.Segments {
			b.WriteByte(' ')
			b.WriteString(strconv.FormatInt(seg.Pos, 10))
			b.WriteByte(':')
			b.WriteString(strconv.FormatInt(seg.Len, 10))
			b.WriteByte(':')
			b.WriteString(Escape(seg.Name))
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// String is Format.
func (m *Manifest) String() string { return m.Format() }

// Stripped returns a copy whose locators carry only hash and size.
func (m *Manifest) Stripped() *Manifest {
	out := &Manifest{Streams: make([]Stream, len(m.Streams))}
	for i, s := range m.Streams {
		ns := Stream{Name: s.Name, Segments: append([]Segment(nil), s.Segments...)}
		for _, l := range s.Blocks {
			ns.Blocks = append(ns.Blocks, l.WithoutHints())
		}
		out.Streams[i] = ns
	}
	return out
}

// PortableDataHash is md5(stripped manifest text) + "+" + its length: a
// name for the content that does not depend on signatures.
func (m *Manifest) PortableDataHash() string {
	text := m.Stripped().Format()
	return fmt.Sprintf("%x+%d", md5.Sum([]byte(text)), len(text))
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
