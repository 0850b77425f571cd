package manifest

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
)

const empty = blockstore.EmptyLocator

func loc(data string) string {
	return fmt.Sprintf("%s+%d", blockstore.HashOf([]byte(data)), len(data))
}

func mustLoc(t testing.TB, s string) blockstore.Locator {
	t.Helper()
	l, err := blockstore.ParseLocator(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestProtocolExample(t *testing.T) {
	// KEEP-PROTOCOL §12.1: two files packed into one block, an empty file
	// in a subdirectory.
	sig := "+A" + strings.Repeat("7", 40) + "@6a5b4c3d"
	block := "524429c1c5a79745b19cf989e34db2a2+15" + sig
	if loc("hello0123456789") != "524429c1c5a79745b19cf989e34db2a2+15" {
		t.Fatal("example hash")
	}
	text := ". " + block + " 0:5:alpha.txt 5:10:my\\040notes.txt\n./empty " + empty + " 0:0:nothing.dat\n"
	m, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Format(); got != text {
		t.Fatalf("round trip:\n%q\n%q", got, text)
	}
	files, err := m.Files()
	if err != nil {
		t.Fatal(err)
	}
	want := []File{
		{Path: "alpha.txt", Size: 5, Chunks: []Chunk{{mustLoc(t, block), 0, 5}}},
		{Path: "empty/nothing.dat", Size: 0},
		{Path: "my notes.txt", Size: 10, Chunks: []Chunk{{mustLoc(t, block), 5, 10}}},
	}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("files:\n%+v\nwant\n%+v", files, want)
	}
	n, err := FromFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	if n.Format() != text {
		t.Fatalf("normalised:\n%q\nwant\n%q", n.Format(), text)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		"plain.txt":     "plain.txt",
		"my notes.txt":  `my\040notes.txt`,
		"a:b":           `a\072b`,
		`back\slash`:    `back\134slash`,
		"tab\there":     `tab\011here`,
		"nul\x00":       `nul\000`,
		"ü ünïcödé":     `ü\040ünïcödé`,
		".":             `\056`,
		"..x":           "..x",
		"\x20\x21\x7f":  "\\040!\x7f",
		"dir/with file": `dir/with\040file`,
	} {
		if got := Escape(in); got != want {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
		back, err := Unescape(Escape(in))
		if err != nil || back != in {
			t.Errorf("Unescape(Escape(%q)) = %q, %v", in, back, err)
		}
	}
	for _, bad := range []string{`a\`, `a\0`, `a\01`, `\888`, `\444`, `\08x`, "a b", "a\tb"} {
		if _, err := Unescape(bad); err == nil {
			t.Errorf("Unescape(%q) accepted", bad)
		}
	}
}

func TestParseValid(t *testing.T) {
	a, b, c := loc("abc"), loc("defg"), loc("hijkl")
	cases := []struct {
		name, text string
		files      []string // "path size" or "path/" for a directory
	}{
		{"empty manifest", "", nil},
		{"empty file", ". " + empty + " 0:0:e\n", []string{"e 0"}},
		{"escaped names", ". " + a + " 0:3:a\\040b\\072c\\134d\n", []string{"a b:c\\d 3"}},
		{"escaped slash is a subdirectory", ". " + a + " 0:3:foo\\057bar\n", []string{"foo/bar 3"}},
		{"escaped stream name", ".\\057Data\\040Folder " + a + " 0:3:x\n", []string{"Data Folder/x 3"}},
		{"utf-8 kept raw", "./ü " + a + " 0:3:é.txt\n", []string{"ü/é.txt 3"}},
		{"empty directory marker", "./d " + empty + " 0:0:\\056\n", []string{"d/"}},
		{"literal dot marker", "./d " + empty + " 0:0:.\n", []string{"d/"}},
		{"marker implied by content", "./d " + empty + " 0:0:\\056\n./d/e " + a + " 0:3:f\n", []string{"d/e/f 3"}},
		{"three dots is a name", ". " + empty + " 0:0:...\n", []string{"... 0"}},
		{"segment across blocks", ". " + a + " " + b + " " + c + " 2:8:x\n", []string{"x 8"}},
		{"same name concatenates", ". " + a + " " + b + " 0:3:x 3:4:x\n", []string{"x 7"}},
		{"unknown hints kept", ". " + a + "+Zfoo+K@zzzzz " + b + " 0:7:x\n", []string{"x 7"}},
		{"leading zeros", ". " + a + " 00:03:x\n", []string{"x 3"}},
		{"zero-length at end", ". " + a + " 3:0:x\n", []string{"x 0"}},
		{"subdir in file token", ". " + a + " 0:3:d/e/f\n./d " + b + " 0:4:g\n", []string{"d/e/f 3", "d/g 4"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse(tc.text)
			if err != nil {
				t.Fatal(err)
			}
			m2, err := Parse(m.Format())
			if err != nil || !reflect.DeepEqual(m, m2) {
				t.Fatalf("round trip: %v\n%q", err, m.Format())
			}
			files, err := m.Files()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range files {
				if f.Dir {
					got = append(got, f.Path+"/")
				} else {
					got = append(got, fmt.Sprintf("%s %d", f.Path, f.Size))
				}
			}
			if !reflect.DeepEqual(got, tc.files) {
				t.Fatalf("files %q, want %q", got, tc.files)
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	a := loc("abc")
	cases := map[string]string{
		"no final newline":          ". " + a + " 0:3:x",
		"empty line":                ". " + a + " 0:3:x\n\n",
		"only newline":              "\n",
		"leading space":             " . " + a + " 0:3:x\n",
		"trailing space":            ". " + a + " 0:3:x \n",
		"double space":              ". " + a + "  0:3:x\n",
		"tab separator":             ".\t" + a + " 0:3:x\n",
		"CR line end":               ". " + a + " 0:3:x\r\n",
		"stream without dot":        "x " + a + " 0:3:x\n",
		"stream ./":                 "./ " + a + " 0:3:x\n",
		"stream .//foo":             ".//foo " + a + " 0:3:x\n",
		"stream ./foo/":             "./foo/ " + a + " 0:3:x\n",
		"stream with ..":            "./a/.. " + a + " 0:3:x\n",
		"stream escapes to ..":      ".\\057\\056\\056 " + a + " 0:3:x\n",
		"no locator":                ". 0:3:x\n",
		"no file token":             ". " + a + "\n",
		"stream name only":          ".\n",
		"locator after file":        ". " + a + " 0:3:x " + a + "\n",
		"locator without size":      ". " + a[:32] + " 0:0:x\n",
		"bad hex":                   ". " + strings.ToUpper(a[:32]) + "+3 0:3:x\n",
		"lower-case hint":           ". " + a + "+zfoo 0:3:x\n",
		"empty hint":                ". " + a + "+ 0:3:x\n",
		"hint with bad char":        ". " + a + "+Zf!o 0:3:x\n",
		"segment past end":          ". " + a + " 1:3:x\n",
		"position past end":         ". " + a + " 4:0:x\n",
		"empty file name":           ". " + a + " 0:3:\n",
		"two-part file token":       ". " + a + " 0:x\n",
		"signed position":           ". " + a + " +0:3:x\n",
		"escaped position":          ". " + a + " \\060:3:x\n",
		"huge length":               ". " + a + " 0:99999999999999999999:x\n",
		"file name ..":              ". " + a + " 0:3:..\n",
		"file name with //":         ". " + a + " 0:3:a//b\n",
		"file name ending in /":     ". " + a + " 0:3:a/\n",
		"file name starting with /": ". " + a + " 0:3:/a\n",
		"escaped .. component":      ". " + a + " 0:3:\\056\\056\\057foo\n",
		"marker with data":          ". " + a + " 0:3:\\056\n",
		"bad escape":                ". " + a + " 0:3:a\\888\n",
		"escape over 8 bits":        ". " + a + " 0:3:a\\444\n",
		"dangling backslash":        ". " + a + " 0:3:a\\\n",
		"raw control char":          ". " + a + " 0:3:a\x01b\n",
		"vertical tab in stream":    "./a\vb " + a + " 0:3:x\n",
	}
	for name, text := range cases {
		if m, err := Parse(text); err == nil {
			t.Errorf("%s: accepted %q as %+v", name, text, m)
		} else if !blockstore.Is(err, blockstore.KindBadRequest) || !strings.Contains(err.Error(), "invalid manifest") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

func TestFilesCrossBlocks(t *testing.T) {
	a, b, c := loc("abc"), loc("defg"), loc("hijkl")
	m, err := Parse(". " + a + " " + b + " " + c + " 2:8:x 0:12:all 7:0:e\n")
	if err != nil {
		t.Fatal(err)
	}
	files, err := m.Files()
	if err != nil {
		t.Fatal(err)
	}
	la, lb, lc := mustLoc(t, a), mustLoc(t, b), mustLoc(t, c)
	want := []File{
		{Path: "all", Size: 12, Chunks: []Chunk{{la, 0, 3}, {lb, 0, 4}, {lc, 0, 5}}},
		{Path: "e", Size: 0},
		{Path: "x", Size: 8, Chunks: []Chunk{{la, 2, 1}, {lb, 0, 4}, {lc, 0, 3}}},
	}
	if !reflect.DeepEqual(files, want) {
		t.Fatalf("got %+v\nwant %+v", files, want)
	}
}

func TestFilesConflicts(t *testing.T) {
	a := loc("abc")
	for _, text := range []string{
		". " + empty + " 0:0:a 0:0:a/b\n",
		". " + a + " 0:3:d\n./d " + empty + " 0:0:f\n",
		". " + a + " 0:3:d\n./d " + empty + " 0:0:\\056\n",
	} {
		m, err := Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Files(); err == nil || !strings.Contains(err.Error(), "both a file and a directory") {
			t.Errorf("%q: %v", text, err)
		}
	}
}

func TestFromFilesNormalises(t *testing.T) {
	a, b, c := mustLoc(t, loc("abc")), mustLoc(t, loc("defg")), mustLoc(t, loc("hijkl"))
	signedA := a
	signedA.Hints = []string{"A" + strings.Repeat("1", 40) + "@00000001"}
	files := []File{
		{Path: "z/late", Size: 5, Chunks: []Chunk{{c, 0, 5}}},
		{Path: "b", Size: 4, Chunks: []Chunk{{b, 0, 4}}},
		{Path: "a", Size: 7, Chunks: []Chunk{{signedA, 0, 3}, {b, 0, 4}}},
		{Path: "dup of a", Size: 3, Chunks: []Chunk{{a, 0, 1}, {a, 1, 2}}},
		{Path: "e", Size: 0},
		{Path: "empty dir", Dir: true},
		{Path: "z", Dir: true}, // implied by z/late: dropped
		{Path: "only empty/x", Size: 0},
	}
	m, err := FromFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	want := ". " + signedA.String() + " " + b.String() + " 0:7:a 3:4:b 0:3:dup\\040of\\040a 0:0:e\n" +
		"./empty\\040dir " + empty + " 0:0:\\056\n" +
		"./only\\040empty " + empty + " 0:0:x\n" +
		"./z " + c.String() + " 0:5:late\n"
	if got := m.Format(); got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	// Normalising an already normal manifest changes nothing; a scrambled
	// one with the same tree comes out the same.
	n, err := m.Normalize()
	if err != nil || n.Format() != want {
		t.Fatalf("normalize: %v\n%s", err, n.Format())
	}
	scrambled := "./z " + c.String() + " 0:5:late\n./only\\040empty " + empty + " 0:0:x\n" +
		". " + b.String() + " " + signedA.String() + " 0:0:e 4:2:dup\\040of\\040a 0:4:b 4:3:a 0:4:a 5:1:dup\\040of\\040a\n" +
		"./empty\\040dir " + empty + " 0:0:.\n"
	sm, err := Parse(scrambled)
	if err != nil {
		t.Fatal(err)
	}
	// The scrambled text describes other bytes for "dup of a" ("ab"+"b");
	// what matters is that normalising keeps the tree it describes.
	sn, err := sm.Normalize()
	if err != nil {
		t.Fatal(err)
	}
	sf, _ := sm.Files()
	nf, _ := sn.Files()
	if !reflect.DeepEqual(flatten(sf), flatten(nf)) {
		t.Fatalf("normalising changed the tree:\n%v\n%v", flatten(sf), flatten(nf))
	}
	for _, s := range sn.Streams {
		seen := map[string]bool{}
		for _, l := range s.Blocks {
			if seen[l.WithoutHints().String()] {
				t.Fatalf("block listed twice in %q", s.Name)
			}
			seen[l.WithoutHints().String()] = true
		}
	}
}

func TestFromFilesErrors(t *testing.T) {
	a := mustLoc(t, loc("abc"))
	cases := map[string][]File{
		"bad path":        {{Path: "../x"}},
		"absolute":        {{Path: "/x"}},
		"size mismatch":   {{Path: "x", Size: 4, Chunks: []Chunk{{a, 0, 3}}}},
		"chunk too long":  {{Path: "x", Size: 4, Chunks: []Chunk{{a, 0, 4}}}},
		"duplicate":       {{Path: "x"}, {Path: "x"}},
		"file and dir":    {{Path: "x"}, {Path: "x/y"}},
		"dir with data":   {{Path: "x", Dir: true, Size: 3, Chunks: []Chunk{{a, 0, 3}}}},
		"marker and file": {{Path: "x"}, {Path: "x", Dir: true}},
	}
	for name, files := range cases {
		if _, err := FromFiles(files); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestPortableDataHash(t *testing.T) {
	a := loc("abc")
	signed := a + "+A" + strings.Repeat("2", 40) + "@12345678"
	m1, _ := Parse(". " + a + " 0:3:x\n")
	m2, _ := Parse(". " + signed + " 0:3:x\n")
	if m1.PortableDataHash() != m2.PortableDataHash() {
		t.Fatal("signature changed the portable data hash")
	}
	text := ". " + a + " 0:3:x\n"
	if want := fmt.Sprintf("%s+%d", blockstore.HashOf([]byte(text)), len(text)); m2.PortableDataHash() != want {
		t.Fatalf("%s, want %s", m2.PortableDataHash(), want)
	}
}

// flatten turns a tree into comparable strings of its bytes' sources.
func flatten(files []File) []string {
	var out []string
	for _, f := range files {
		s := fmt.Sprintf("%s dir=%v size=%d:", f.Path, f.Dir, f.Size)
		for _, c := range f.Chunks {
			for i := int64(0); i < c.Len; i++ {
				s += fmt.Sprintf(" %s@%d", c.Locator.Hash.String()[:6], c.Offset+i)
			}
		}
		out = append(out, s)
	}
	return out
}
