package dirvolume

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
)

// copyTree copies the regular files below src into dst (a crash image:
// what the disk holds at that instant).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestCrashBetweenChecksumsAndBlock takes the image of the volume at the
// moment between the two renames of a Put (sidecar in place, block not
// yet) and opens a volume on it, as after a crash there: the block is
// absent, the orphan sidecar is removed, and a Put then works. An image
// taken at the same point of a re-Put of an existing block keeps the old
// copy readable and verified.
func TestCrashBetweenChecksumsAndBlock(t *testing.T) {
	for _, existing := range []bool{false, true} {
		root := t.TempDir()
		v, err := New(Config{Root: root, Reserve: -1})
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte("0123456789abcdef"), 3<<16+11) // 3 MiB and a bit
		h := blockstore.HashOf(data)
		if existing {
			if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
		}
		image := t.TempDir()
		v.afterSums = func() { copyTree(t, root, image) }
		if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		v.Close()

		after, err := New(Config{Root: image, Reserve: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer after.Close()
		sidecarPath := filepath.Join(image, sumsName(h.String()))
		rc, info, err := after.Get(t.Context(), h, 0, -1)
		if !existing {
			if !blockstore.Is(err, blockstore.KindNotFound) {
				t.Fatalf("new block after the crash: want NotFound, got %v", err)
			}
			if _, err := os.Stat(sidecarPath); !os.IsNotExist(err) {
				t.Fatalf("orphan checksum file kept: %v", err)
			}
			entries, _ := os.ReadDir(filepath.Dir(sidecarPath))
			for _, e := range entries {
				t.Errorf("left after the crash: %s", e.Name())
			}
			if err := after.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("existing block after the crash: %v", err)
		}
		cr := blockstore.NewChunkReader(rc, info.Checksums, 0, info.Size, "test")
		got, err := io.ReadAll(cr)
		cr.Close()
		if info.Checksums == nil || err != nil || !bytes.Equal(got, data) {
			t.Fatalf("existing block after the crash: checksums %v, %v, equal %v", info.Checksums != nil, err, bytes.Equal(got, data))
		}
	}
}

// TestDamagedSidecarIsNoChecksums: a sidecar that is damaged, of another
// block, or of another size is ignored (Get reports no checksums), so the
// caller verifies by MD5 and may rewrite it.
func TestDamagedSidecarIsNoChecksums(t *testing.T) {
	root := t.TempDir()
	v, err := New(Config{Root: root, Reserve: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	a := bytes.Repeat([]byte("a"), 2<<20+1)
	b := bytes.Repeat([]byte("b"), 2<<20+1)
	ha, hb := blockstore.HashOf(a), blockstore.HashOf(b)
	for _, d := range [][]byte{a, b} {
		if err := v.Put(t.Context(), blockstore.HashOf(d), bytes.NewReader(d), int64(len(d))); err != nil {
			t.Fatal(err)
		}
	}
	pa := filepath.Join(root, sumsName(ha.String()))
	good, _ := os.ReadFile(pa)
	other, _ := os.ReadFile(filepath.Join(root, sumsName(hb.String())))
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 1
	for name, content := range map[string][]byte{"flipped": flipped, "another block's": other, "truncated": good[:20], "empty": nil} {
		os.WriteFile(pa, content, 0o600)
		rc, info, err := v.Get(t.Context(), ha, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if info.Checksums != nil {
			t.Errorf("%s sidecar: Get reported checksums", name)
		}
	}
}

// TestCompressedBlockKeepsUncompressedChecksums: a block stored as zstd
// keeps the checksums of its uncompressed bytes, and a range read of it
// checks out chunk by chunk.
func TestCompressedBlockKeepsUncompressedChecksums(t *testing.T) {
	root := t.TempDir()
	v, err := New(Config{Root: root, Reserve: -1, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	data := bytes.Repeat([]byte("keep chunk checksums of the plain bytes\n"), 3<<20/40)
	h := blockstore.HashOf(data)
	if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	l, err := v.find("test", h)
	if err != nil || !l.name.zst {
		t.Fatalf("not stored compressed: %+v %v", l.name, err)
	}
	var want blockstore.ChunkHasher
	want.Write(data)
	off := int64(blockstore.ChunkSize + 77)
	rc, info, err := v.Get(t.Context(), h, blockstore.ChunkStart(off), -1)
	if err != nil {
		t.Fatal(err)
	}
	if !info.Checksums.Equal(want.Sum()) {
		t.Fatal("checksums are not those of the uncompressed bytes")
	}
	cr := blockstore.NewChunkReader(rc, info.Checksums, off, int64(len(data))-off, "test")
	got, err := io.ReadAll(cr)
	cr.Close()
	if err != nil || !bytes.Equal(got, data[off:]) {
		t.Fatalf("chunk-checked range of a compressed block: %d bytes, %v", len(got), err)
	}
}
