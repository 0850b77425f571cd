package manifest

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that whatever it accepts
// formats back to text it parses to the same value, and that the tree it
// describes survives normalisation.
func FuzzParse(f *testing.F) {
	a, b := loc("abc"), loc("defg")
	for _, s := range []string{
		"",
		". " + empty + " 0:0:e\n",
		". " + a + " " + b + " 0:7:x 2:3:y\\040z\n./d\\072 " + empty + " 0:0:\\056\n",
		". " + a + "+A" + strings.Repeat("0", 40) + "@00000000+Zx " + b + " 0:1:a/b 1:6:a/c\n",
		"./ü\\134 " + a + " 3:0:. 0:3:é\n",
		". " + a + " 0:3:x\n. " + b + " 0:4:x\n",
		". " + a + " 0:3:\\056\\056\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		m, err := Parse(text)
		if err != nil {
			return
		}
		out := m.Format()
		m2, err := Parse(out)
		if err != nil {
			t.Fatalf("Format output does not parse: %v\n%q\nfrom %q", err, out, text)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the manifest:\n%q\n%q", text, out)
		}
		if out2 := m2.Format(); out2 != out {
			t.Fatalf("Format not stable:\n%q\n%q", out, out2)
		}
		files, err := m.Files()
		if err != nil {
			return
		}
		n, err := FromFiles(files)
		if err != nil {
			t.Fatalf("FromFiles rejected the tree of %q: %v", text, err)
		}
		nt := n.Format()
		n2, err := Parse(nt)
		if err != nil {
			t.Fatalf("normalised text does not parse: %v\n%q", err, nt)
		}
		files2, err := n2.Files()
		if err != nil {
			t.Fatalf("normalised tree: %v", err)
		}
		if !reflect.DeepEqual(flattenRanges(files), flattenRanges(files2)) {
			t.Fatalf("normalising changed the tree of %q:\n%q", text, nt)
		}
		if n3, err := n2.Normalize(); err != nil || n3.Format() != nt {
			t.Fatalf("normalising twice changed the text: %v", err)
		}
	})
}

// flattenRanges describes a tree by path, kind, size and block ranges
// (hash, offset, length), merging adjacent ranges of one block.
func flattenRanges(files []File) []string {
	var out []string
	for _, f := range files {
		var cs []Chunk
		for _, c := range f.Chunks {
			c.Locator = c.Locator.WithoutHints()
			cs = appendChunk(cs, c)
		}
		s := f.Path
		if f.Dir {
			s += "/"
		}
		for _, c := range cs {
			s += " " + c.Locator.String() + ":" + strconv.FormatInt(c.Offset, 10) + ":" + strconv.FormatInt(c.Len, 10)
		}
		out = append(out, s+" size="+strconv.FormatInt(f.Size, 10))
	}
	return out
}
