package manifest

import (
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
)

// File is one file, or one empty directory, of the tree a manifest
// describes.
type File struct {
	// Path is relative and slash-separated, e.g. "dir/sub/name.txt".
	Path string
	// Dir marks an empty directory (Size 0, no Chunks).
	Dir bool
	// Size is the file's length: the sum of its chunks' lengths.
	Size int64
	// Chunks hold the file's bytes in order.
	Chunks []Chunk
}

// Chunk is Len bytes at Offset of one block.
type Chunk struct {
	Locator     blockstore.Locator
	Offset, Len int64
}

// sameBlock compares hash and size, ignoring hints (signatures differ
// between tokens and over time; the bytes do not).
func sameBlock(a, b blockstore.Locator) bool { return a.Hash == b.Hash && a.Size == b.Size }

// Files resolves the manifest into its tree, sorted by path. Segments of
// the same path are concatenated in text order (also across streams);
// adjacent pieces of one block are merged. An empty-directory marker is
// reported only for a directory that has nothing else in it. A path that
// is both a file and a directory is an error.
func (m *Manifest) Files() ([]File, error) {
	byPath := map[string]*File{}
	var order []string
	markers := map[string]bool{}
	for si := range m.Streams {
		s := &m.Streams[si]
		prefix := ""
		if s.Name != "." {
			prefix = s.Name[2:]
		}
		ends := make([]int64, len(s.Blocks))
		var total int64
		for i, b := range s.Blocks {
			total += b.Size
			ends[i] = total
		}
		for _, seg := range s.Segments {
			if seg.Name == DirMarker {
				if prefix != "" {
					markers[prefix] = true
				}
				continue
			}
			full := seg.Name
			if prefix != "" {
				full = prefix + "/" + seg.Name
			}
			f := byPath[full]
			if f == nil {
				f = &File{Path: full}
				byPath[full] = f
				order = append(order, full)
			}
			f.Size += seg.Len
			pos, end := seg.Pos, seg.Pos+seg.Len
			for pos < end {
				i := sort.Search(len(ends), func(i int) bool { return ends[i] > pos })
				if i == len(ends) {
					return nil, errorf("stream %q: segment %d:%d is outside the stream", s.Name, seg.Pos, seg.Len)
				}
				start := ends[i] - s.Blocks[i].Size
				n := min(end, ends[i]) - pos
				f.Chunks = appendChunk(f.Chunks, Chunk{Locator: s.Blocks[i], Offset: pos - start, Len: n})
				pos += n
			}
		}
	}
	var out []File
	for _, p := range order {
		out = append(out, *byPath[p])
	}
	for d := range markers {
		out = append(out, File{Path: d, Dir: true})
	}
	return finishTree(out)
}

func appendChunk(cs []Chunk, c Chunk) []Chunk {
	if c.Len == 0 {
		return cs
	}
	if n := len(cs); n > 0 {
		last := &cs[n-1]
		if sameBlock(last.Locator, c.Locator) && last.Offset+last.Len == c.Offset {
			last.Len += c.Len
			return cs
		}
	}
	return append(cs, c)
}

// finishTree sorts entries by path, drops directory markers that are
// implied by something beneath them, and rejects duplicates and paths
// that are both a file and a directory.
func finishTree(entries []File) ([]File, error) {
	slices.SortStableFunc(entries, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	implied := map[string]bool{}
	files := map[string]bool{}
	for _, e := range entries {
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			if implied[d] {
				break
			}
			implied[d] = true
		}
		if !e.Dir {
			if files[e.Path] {
				return nil, errorf("path %q is listed twice", trunc(e.Path))
			}
			files[e.Path] = true
		}
	}
	out := make([]File, 0, len(entries))
	for i, e := range entries {
		switch {
		case !e.Dir && implied[e.Path], e.Dir && files[e.Path]:
			return nil, errorf("%q is both a file and a directory", trunc(e.Path))
		case e.Dir && (implied[e.Path] || i > 0 && entries[i-1].Path == e.Path):
			continue // not empty, or listed twice
		}
		out = append(out, e)
	}
	return out, nil
}

// FromFiles builds the normalised manifest of a tree: one stream per
// directory ("." for the top), streams and the files in each sorted by
// name, each block listed once per stream in order of first use, the
// chunks of a file merged into as few segments as possible. Empty files
// are 0:0:name; a stream with no data gets the empty block; an empty
// directory is a stream holding only the marker 0:0:\056.
func FromFiles(files []File) (*Manifest, error) {
	entries := make([]File, 0, len(files))
	for _, f := range files {
		if err := ValidPath(f.Path); err != nil {
			return nil, err
		}
		var sum int64
		for _, c := range f.Chunks {
			if !c.Locator.HasSize() || c.Offset < 0 || c.Len < 0 || c.Offset > c.Locator.Size || c.Len > c.Locator.Size-c.Offset {
				return nil, errorf("file %q: chunk %d+%d does not fit block %s", trunc(f.Path), c.Offset, c.Len, c.Locator.String())
			}
			sum += c.Len
		}
		if f.Dir && (f.Size != 0 || sum != 0) {
			return nil, errorf("directory %q has data", trunc(f.Path))
		}
		if sum != f.Size {
			return nil, errorf("file %q: chunks hold %d bytes, size is %d", trunc(f.Path), sum, f.Size)
		}
		entries = append(entries, f)
	}
	entries, err := finishTree(entries)
	if err != nil {
		return nil, err
	}
	// Group by stream.
	type group struct {
		name  string
		files []File
	}
	groups := map[string]*group{}
	var names []string
	add := func(stream string, f File) {
		g := groups[stream]
		if g == nil {
			g = &group{name: stream}
			groups[stream] = g
			names = append(names, stream)
		}
		g.files = append(g.files, f)
	}
	for _, f := range entries {
		if f.Dir {
			add("./"+f.Path, File{Path: DirMarker, Dir: true})
			continue
		}
		dir, base := path.Split(f.Path)
		stream := "."
		if dir != "" {
			stream = "./" + strings.TrimSuffix(dir, "/")
		}
		f.Path = base
		add(stream, f)
	}
	slices.Sort(names)
	m := &Manifest{}
	for _, name := range names {
		g := groups[name]
		slices.SortStableFunc(g.files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
		s := Stream{Name: name}
		type key struct {
			h blockstore.Hash
			n int64
		}
		start := map[key]int64{}
		var total int64
		for _, f := range g.files {
			var segs []Segment
			for _, c := range f.Chunks {
				k := key{c.Locator.Hash, c.Locator.Size}
				p, ok := start[k]
				if !ok {
					p = total
					start[k] = p
					total += c.Locator.Size
					s.Blocks = append(s.Blocks, c.Locator)
				}
				pos := p + c.Offset
				if n := len(segs); n > 0 && segs[n-1].Pos+segs[n-1].Len == pos {
					segs[n-1].Len += c.Len
					continue
				}
				segs = append(segs, Segment{Pos: pos, Len: c.Len, Name: f.Path})
			}
			if len(segs) == 0 {
				segs = []Segment{{Pos: 0, Len: 0, Name: f.Path}}
			}
			s.Segments = append(s.Segments, segs...)
		}
		if len(s.Blocks) == 0 {
			s.Blocks = []blockstore.Locator{{Hash: blockstore.EmptyHash, Size: 0}}
		}
		m.Streams = append(m.Streams, s)
	}
	return m, nil
}

// Normalize returns the normalised form of m (see FromFiles).
func (m *Manifest) Normalize() (*Manifest, error) {
	files, err := m.Files()
	if err != nil {
		return nil, err
	}
	return FromFiles(files)
}
