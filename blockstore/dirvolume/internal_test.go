package dirvolume

import (
	"bytes"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
)

func TestParseName(t *testing.T) {
	const h = "0123456789abcdef0123456789abcdef"
	good := map[string]fileName{
		h:                              {hash: h, size: -1},
		h + ".zst.0":                   {hash: h, zst: true, size: 0},
		h + ".zst.67108864":            {hash: h, zst: true, size: 67108864},
		h + ".trash.1700000000":        {hash: h, size: -1, trash: true, deadline: 1700000000},
		h + ".zst.12.trash.1700000000": {hash: h, zst: true, size: 12, trash: true, deadline: 1700000000},
	}
	for s, want := range good {
		got, ok := parseName(s)
		if !ok || got != want {
			t.Errorf("parseName(%q) = %+v, %v; want %+v", s, got, ok, want)
		}
		if got.String() != s {
			t.Errorf("parseName(%q).String() = %q", s, got.String())
		}
	}
	bad := []string{
		"", h[:31], strings.ToUpper(h), h + "x", h + ".", h + ".zst", h + ".zst.", h + ".zst.012",
		h + ".zst.67108865", h + ".zst.-1", h + ".zst.1x", h + ".trash", h + ".trash.", h + ".trash.-5",
		h + ".trash.1.zst.5", ".tmp-" + h + "-abc", "tmp" + h + "123", h + ".tmp", h + ".trash.99999999999999999999",
	}
	for _, s := range bad {
		if n, ok := parseName(s); ok {
			t.Errorf("parseName(%q) accepted: %+v", s, n)
		}
	}
}

// failingFile fails writes with ENOSPC once limit bytes were written.
type failingFile struct {
	*os.File
	limit int
}

func (f *failingFile) Write(p []byte) (int, error) {
	if len(p) > f.limit {
		n, _ := f.File.Write(p[:f.limit])
		f.limit = 0
		return n, &fs.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.limit -= len(p)
	return f.File.Write(p)
}

func TestNoSpaceDuringWrite(t *testing.T) {
	for _, compress := range []bool{false, true} {
		root := t.TempDir()
		v, err := New(Config{Root: root, Reserve: -1, Compress: compress})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		v.openTemp = func(name string) (tempFile, error) {
			f, err := v.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return nil, err
			}
			return &failingFile{File: f, limit: 1000}, nil
		}
		// Compressible (4 letters: about 2 bits a byte) but not trivially.
		data := make([]byte, 1<<20)
		rnd := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = "acgt"[rnd.IntN(4)]
		}
		h := blockstore.HashOf(data)
		err = v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data)))
		if !blockstore.Is(err, blockstore.KindFull) || !strings.Contains(blockstore.Message(err), "is full") {
			t.Fatalf("compress=%v: Put on a full disk: want Full, got %v", compress, err)
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				t.Errorf("compress=%v: failed Put left %s", compress, p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("compress=%v: Stat after a failed Put: want NotFound, got %v", compress, err)
		}
	}
}
