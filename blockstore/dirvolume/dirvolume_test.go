package dirvolume_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/dirvolume"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

func factory(compress bool) volumetest.Factory {
	return func(t *testing.T, p blockstore.TrashPolicy) blockstore.Volume {
		return newVol(t, dirvolume.Config{Root: t.TempDir(), Reserve: -1, Compress: compress, Policy: p})
	}
}

func newVol(t *testing.T, cfg dirvolume.Config) *dirvolume.Volume {
	t.Helper()
	v, err := dirvolume.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	return v
}

func TestConformance(t *testing.T) {
	t.Parallel()
	volumetest.Run(t, factory(false), volumetest.Options{})
}

func TestConformanceCompressed(t *testing.T) {
	t.Parallel()
	volumetest.Run(t, factory(true), volumetest.Options{})
}

// files lists every entry below root (relative paths, slash-separated).
func files(t *testing.T, root string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // deleted while walking
		}
		if err != nil || p == root || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if strings.HasSuffix(rel, ".crc32c") {
			return nil // checksum sidecars: see checksums_test.go
		}
		out[filepath.ToSlash(rel)] = fi.Size()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func assertNoTempFiles(t *testing.T, root string) {
	t.Helper()
	for name := range files(t, root) {
		if strings.Contains(name, ".tmp-") {
			t.Fatalf("temp file left behind: %s", name)
		}
	}
}

func put(t *testing.T, v blockstore.Volume, data []byte) blockstore.Hash {
	t.Helper()
	h := blockstore.HashOf(data)
	if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put: %v", err)
	}
	return h
}

func get(t *testing.T, v blockstore.Volume, h blockstore.Hash, off, n int64) []byte {
	t.Helper()
	rc, _, err := v.Get(t.Context(), h, off, n)
	if err != nil {
		t.Fatalf("Get(%d, %d): %v", off, n, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get(%d, %d) read: %v", off, n, err)
	}
	return data
}

func index(t *testing.T, v blockstore.Volume, prefix string) []blockstore.BlockInfo {
	t.Helper()
	var out []blockstore.BlockInfo
	if err := v.Index(t.Context(), prefix, func(i blockstore.BlockInfo) error { out = append(out, i); return nil }); err != nil {
		t.Fatalf("Index(%q): %v", prefix, err)
	}
	return out
}

// text returns n bytes of compressible, non-trivial text.
func text(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of a compressible test block: the quick brown fox jumps over the lazy dog\n", i)
	}
	return b.Bytes()[:n]
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestNewValidatesRoot(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, nil)
	for _, c := range []struct {
		root, want string
		kind       blockstore.Kind
	}{
		{"", "absolute path", blockstore.KindBadRequest},
		{"relative/dir", "absolute path", blockstore.KindBadRequest},
		{filepath.Join(dir, "missing"), "does not exist", blockstore.KindUnavailable},
		{file, "not a directory", blockstore.KindUnavailable},
	} {
		_, err := dirvolume.New(dirvolume.Config{Root: c.root})
		if !blockstore.Is(err, c.kind) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%q): want %v error mentioning %q, got %v", c.root, c.kind, c.want, err)
		}
	}
	v := newVol(t, dirvolume.Config{Root: dir + "/"})
	if got, want := v.DeviceID(), "dir:"+dir; got != want {
		t.Fatalf("DeviceID = %q, want %q", got, want)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := v.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewRemovesTempFilesAndIndexSkipsThem(t *testing.T) {
	root := t.TempDir()
	data := text(1000)
	h := blockstore.HashOf(data)
	hash := h.String()
	leftover := filepath.Join(root, hash[:3], ".tmp-"+hash+"-crashed")
	writeFile(t, leftover, data)
	writeFile(t, filepath.Join(root, "fff", ".tmp-ffffffffffffffffffffffffffffffff-x"), []byte("junk"))
	arvadosTemp := filepath.Join(root, hash[:3], "tmp"+hash+"123")
	writeFile(t, arvadosTemp, data)
	stray := filepath.Join(root, "notes.txt")
	writeFile(t, stray, []byte("not ours"))

	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1})
	if _, err := os.Stat(leftover); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("leftover temp file still there: %v", err)
	}
	assertNoTempFiles(t, root)
	for _, p := range []string{arvadosTemp, stray} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("New removed a file that is not its temp file: %v", err)
		}
	}
	// A temp file of a Put in progress is never listed nor served.
	writeFile(t, leftover, data)
	if got := index(t, v, ""); len(got) != 0 {
		t.Fatalf("Index lists temp files: %+v", got)
	}
	if _, err := v.Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("Stat of a block that only has a temp file: want NotFound, got %v", err)
	}
}

func TestWrongContentIsReturnedRaw(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1})
	data := text(5000)
	h := blockstore.HashOf(data)
	wrong := bytes.ToUpper(data)
	writeFile(t, filepath.Join(root, h.String()[:3], h.String()), wrong)
	// The volume does not verify: the caller does, with a VerifyingWriter.
	if got := get(t, v, h, 0, -1); !bytes.Equal(got, wrong) {
		t.Fatal("Get did not return the stored bytes")
	}
	var out bytes.Buffer
	rc, _, err := v.Get(t.Context(), h, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	vw := blockstore.NewVerifyingWriter(&out, h, int64(len(data)))
	if _, err := io.Copy(vw, rc); !blockstore.Is(err, blockstore.KindCorrupt) {
		t.Fatalf("verifying the wrong content: want Corrupt, got %v", err)
	}
	if got := index(t, v, ""); len(got) != 1 || got[0].Hash != h || got[0].Size != int64(len(wrong)) {
		t.Fatalf("Index: %+v", got)
	}
}

func TestReserve(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: 1 << 62})
	data := text(100000)
	h := blockstore.HashOf(data)
	err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data)))
	if !blockstore.Is(err, blockstore.KindFull) || !strings.Contains(blockstore.Message(err), "is full") {
		t.Fatalf("Put with a huge reserve: want Full, got %v", err)
	}
	if got := files(t, root); len(got) != 0 {
		t.Fatalf("failed Put left files: %v", got)
	}
	// The default reserve (64 MiB) leaves room on the test machine.
	def := newVol(t, dirvolume.Config{Root: t.TempDir()})
	put(t, def, data)
}

func TestCompressionOnDisk(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: true})
	zeros := make([]byte, 8<<20)
	txt := text(8 << 20)
	small := text(4000)
	random, _ := volumetest.Block(1, 3<<20)
	tiny := []byte("hello keep\n")
	blocks := [][]byte{zeros, txt, small, random, tiny}
	for _, data := range blocks {
		put(t, v, data)
	}
	onDisk := files(t, root)
	for _, data := range blocks {
		h := blockstore.HashOf(data)
		hash := h.String()
		compressible := len(data) >= 1000 && !bytes.Equal(data, random)
		raw := hash[:3] + "/" + hash
		zst := fmt.Sprintf("%s.zst.%d", raw, len(data))
		if compressible {
			size, ok := onDisk[zst]
			if !ok || size >= int64(len(data))*7/8 {
				t.Errorf("%d-byte compressible block: want %s smaller than 7/8, files %v", len(data), zst, onDisk)
			}
			if _, ok := onDisk[raw]; ok {
				t.Errorf("compressible block also stored raw")
			}
		} else if size, ok := onDisk[raw]; !ok || size != int64(len(data)) {
			t.Errorf("%d-byte incompressible block: want raw %s, files %v", len(data), raw, onDisk)
		}
		if got := get(t, v, h, 0, -1); !bytes.Equal(got, data) {
			t.Errorf("%d-byte block: content differs", len(data))
		}
		info, err := v.Stat(t.Context(), h)
		if err != nil || info.Size != int64(len(data)) {
			t.Errorf("Stat: %+v %v", info, err)
		}
	}
	got := index(t, v, "")
	if len(got) != len(blocks) {
		t.Fatalf("Index: %d entries, want %d", len(got), len(blocks))
	}
	for _, i := range got {
		found := false
		for _, data := range blocks {
			if blockstore.HashOf(data) == i.Hash && int64(len(data)) == i.Size {
				found = true
			}
		}
		if !found {
			t.Fatalf("Index entry with wrong size: %+v", i)
		}
	}
}

func TestCompressedRangeReads(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: true})
	data := text(3<<20 + 12345)
	h := put(t, v, data)
	if _, ok := files(t, root)[fmt.Sprintf("%s/%s.zst.%d", h.String()[:3], h, len(data))]; !ok {
		t.Fatal("block was not stored compressed")
	}
	size := int64(len(data))
	for _, c := range []struct{ off, n int64 }{
		{0, 1}, {0, -1}, {1, 100}, {1 << 20, 1 << 20}, {size - 1, -1}, {size - 10, 5}, {2<<20 + 7, -1}, {size, 0}, {12345, 0},
	} {
		want := c.n
		if want < 0 {
			want = size - c.off
		}
		if got := get(t, v, h, c.off, c.n); !bytes.Equal(got, data[c.off:c.off+want]) {
			t.Fatalf("Get(%d, %d): got %d bytes, want %d", c.off, c.n, len(got), want)
		}
	}
	if _, _, err := v.Get(t.Context(), h, size+1, -1); !blockstore.Is(err, blockstore.KindBadRange) {
		t.Fatalf("Get past the end: want BadRange, got %v", err)
	}
}

func TestPutUnknownSize(t *testing.T) {
	for _, compress := range []bool{false, true} {
		root := t.TempDir()
		v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: compress})
		for _, data := range [][]byte{nil, text(100), text(1 << 20)} {
			h := blockstore.HashOf(data)
			if err := v.Put(t.Context(), h, bytes.NewReader(data), -1); err != nil {
				t.Fatalf("compress=%v: Put %d bytes of unknown size: %v", compress, len(data), err)
			}
			if got := get(t, v, h, 0, -1); !bytes.Equal(got, data) {
				t.Fatalf("compress=%v: content differs", compress)
			}
		}
		bad := text(1 << 20)
		h := blockstore.HashOf(bad)
		bad[len(bad)-1] ^= 1
		if err := v.Put(t.Context(), h, bytes.NewReader(bad), -1); !blockstore.Is(err, blockstore.KindHashMismatch) {
			t.Fatalf("compress=%v: wrong body of unknown size: want HashMismatch, got %v", compress, err)
		}
		assertNoTempFiles(t, root)
	}
}

func TestCompressedBadBodiesLeaveNothing(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: true})
	data := text(2 << 20)
	h := blockstore.HashOf(data)
	bad := append([]byte(nil), data...)
	bad[len(bad)-1] ^= 1
	for name, body := range map[string][]byte{"short": data[:len(data)-1], "long": append(append([]byte(nil), data...), 'x'), "wrong": bad} {
		if err := v.Put(t.Context(), h, bytes.NewReader(body), int64(len(data))); err == nil {
			t.Fatalf("%s: Put succeeded", name)
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := v.Put(ctx, h, bytes.NewReader(data), int64(len(data))); !blockstore.Is(err, blockstore.KindCanceled) {
		t.Fatalf("cancelled Put: want Canceled, got %v", err)
	}
	for name := range files(t, root) {
		t.Fatalf("failed Puts left %s", name)
	}
}

func TestSwitchingCompression(t *testing.T) {
	root := t.TempDir()
	data := text(1 << 20)
	h := blockstore.HashOf(data)
	hash := h.String()
	zst := fmt.Sprintf("%s/%s.zst.%d", hash[:3], hash, len(data))

	cv := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: true})
	put(t, cv, data)
	cv.Close()

	// A volume without compression still reads compressed blocks, and a
	// new Put replaces the compressed copy with a raw one.
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Policy: blockstore.TrashPolicy{Lifetime: time.Hour}})
	if got := get(t, v, h, 10, 100); !bytes.Equal(got, data[10:110]) {
		t.Fatal("uncompressed volume cannot read a compressed block")
	}
	if got := index(t, v, hash[:2]); len(got) != 1 || got[0].Size != int64(len(data)) {
		t.Fatalf("Index: %+v", got)
	}
	put(t, v, data)
	onDisk := files(t, root)
	if _, ok := onDisk[zst]; ok || onDisk[hash[:3]+"/"+hash] != int64(len(data)) {
		t.Fatalf("after a raw re-Put: %v", onDisk)
	}
	// Both forms at once (e.g. a crash between rename and cleanup): one
	// Index entry, and Trash hides both.
	writeFile(t, filepath.Join(root, zst), []byte("stale"))
	if got := index(t, v, ""); len(got) != 1 {
		t.Fatalf("Index lists a block stored twice %d times", len(got))
	}
	if err := v.Trash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("Stat after Trash: want NotFound, got %v", err)
	}
	if err := v.Untrash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	onDisk = files(t, root)
	if _, ok := onDisk[zst]; !ok || len(onDisk) != 2 {
		t.Fatalf("Untrash did not restore both forms: %v", onDisk)
	}
	if got := get(t, v, h, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("content differs after Untrash")
	}
	put(t, v, data)
	if onDisk = files(t, root); len(onDisk) != 1 {
		t.Fatalf("a re-Put left the other form: %v", onDisk)
	}
}

func TestTrashKeepsCompressionAndEmptyTrashDeletesExpiredOnly(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: true,
		Policy: blockstore.TrashPolicy{Lifetime: time.Hour}})
	data := text(100000)
	h := put(t, v, data)
	hash := h.String()
	if err := v.Trash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	var trashName string
	for name := range files(t, root) {
		trashName = name
	}
	prefix := fmt.Sprintf("%s/%s.zst.%d.trash.", hash[:3], hash, len(data))
	if !strings.HasPrefix(trashName, prefix) {
		t.Fatalf("trash file %q, want prefix %q", trashName, prefix)
	}
	if err := v.Untrash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if got := get(t, v, h, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("content differs after Untrash")
	}

	past := time.Now().Add(-time.Minute).Unix()
	future := time.Now().Add(time.Hour).Unix()
	expired := []string{
		fmt.Sprintf("aaa/aaa00000000000000000000000000000.trash.%d", past),
		fmt.Sprintf("bbb/bbb00000000000000000000000000000.zst.10.trash.%d", past),
		"ccc/ccc00000000000000000000000000000.trash.0",
	}
	kept := []string{
		fmt.Sprintf("aaa/aaa11111111111111111111111111111.trash.%d", future),
		fmt.Sprintf("bbb/bbb11111111111111111111111111111.zst.10.trash.%d", future),
		"aaa/aaa22222222222222222222222222222",
		fmt.Sprintf("aaa/aaa33333333333333333333333333333.trash.%dx", past),  // not a trash name
		fmt.Sprintf("notes/ddd00000000000000000000000000000.trash.%d", past), // not a hex subdirectory
	}
	for _, name := range append(append([]string(nil), expired...), kept...) {
		writeFile(t, filepath.Join(root, name), []byte("x"))
	}
	if err := v.EmptyTrash(t.Context()); err != nil {
		t.Fatal(err)
	}
	onDisk := files(t, root)
	for _, name := range expired {
		if _, ok := onDisk[name]; ok {
			t.Errorf("expired trash %s not deleted", name)
		}
	}
	for _, name := range kept {
		if _, ok := onDisk[name]; !ok {
			t.Errorf("EmptyTrash deleted %s", name)
		}
	}
	if got := get(t, v, h, 0, -1); !bytes.Equal(got, data) {
		t.Fatal("EmptyTrash touched a live block")
	}
}

func TestTrashLifetimeZeroDeletes(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1})
	h := put(t, v, text(1000))
	if err := v.Trash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if got := files(t, root); len(got) != 0 {
		t.Fatalf("Trash with zero lifetime left %v", got)
	}
	if err := v.Untrash(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("Untrash: want NotFound, got %v", err)
	}
	if err := v.Trash(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("Trash of a missing block: want NotFound, got %v", err)
	}
}

func TestDamagedFiles(t *testing.T) {
	root := t.TempDir()
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Compress: true})
	data := text(1 << 20)
	h := put(t, v, data)
	hash := h.String()
	zst := filepath.Join(root, hash[:3], fmt.Sprintf("%s.zst.%d", hash, len(data)))
	good, err := os.ReadFile(zst)
	if err != nil {
		t.Fatal(err)
	}

	// Not zstd at all: fails before the first byte.
	writeFile(t, zst, []byte("this is not a zstd frame, just some junk bytes"))
	if _, _, err := v.Get(t.Context(), h, 0, -1); !blockstore.Is(err, blockstore.KindCorrupt) {
		t.Fatalf("Get of a junk compressed file: want Corrupt, got %v", err)
	}
	// Truncated frame: the reader fails instead of ending cleanly.
	writeFile(t, zst, good[:len(good)/2])
	if err := readAll(t, v, h); !blockstore.Is(err, blockstore.KindCorrupt) {
		t.Fatalf("truncated compressed file: want Corrupt, got %v", err)
	}
	// Decodes to a different size than the name says.
	other := text(1<<20 + 1)
	if err := os.Remove(zst); err != nil {
		t.Fatal(err)
	}
	oh := put(t, v, other)
	otherPath := filepath.Join(root, oh.String()[:3], fmt.Sprintf("%s.zst.%d", oh, len(other)))
	longer, _ := os.ReadFile(otherPath)
	writeFile(t, zst, longer)
	if err := readAll(t, v, h); !blockstore.Is(err, blockstore.KindCorrupt) {
		t.Fatalf("compressed file longer than its name says: want Corrupt, got %v", err)
	}
	// A file over 64 MiB is not a block.
	if err := os.Remove(zst); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(root, hash[:3], hash)
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(blockstore.MaxBlockSize + 1)
	f.Close()
	if _, _, err := v.Get(t.Context(), h, 0, -1); !blockstore.Is(err, blockstore.KindTooLarge) {
		t.Fatalf("Get of an oversized file: want TooLarge, got %v", err)
	}
	if _, err := v.Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindTooLarge) {
		t.Fatalf("Stat of an oversized file: want TooLarge, got %v", err)
	}
	for _, i := range index(t, v, "") {
		if i.Hash == h {
			t.Fatal("Index lists an oversized file")
		}
	}
}

func readAll(t *testing.T, v blockstore.Volume, h blockstore.Hash) error {
	t.Helper()
	rc, _, err := v.Get(t.Context(), h, 0, -1)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

func TestPathsCannotEscapeRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "vol")
	outside := filepath.Join(base, "outside")
	data := text(1000)
	h := blockstore.HashOf(data)
	hash := h.String()
	// Outside the root, a directory that looks like a subdirectory with the
	// block in it, and the volume's subdirectory a symlink to it.
	writeFile(t, filepath.Join(outside, hash), data)
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(root, hash[:3])); err != nil {
		t.Fatal(err)
	}
	v := newVol(t, dirvolume.Config{Root: root, Reserve: -1, Policy: blockstore.TrashPolicy{Lifetime: time.Hour}})

	for _, prefix := range []string{"../", "..", "/etc", "abc/../..", "ABC", strings.Repeat("a", 33)} {
		err := v.Index(t.Context(), prefix, func(i blockstore.BlockInfo) error {
			t.Fatalf("Index(%q) listed %+v", prefix, i)
			return nil
		})
		if !blockstore.Is(err, blockstore.KindBadRequest) {
			t.Fatalf("Index(%q): want BadRequest, got %v", prefix, err)
		}
	}
	if got := index(t, v, hash[:3]); len(got) != 0 {
		t.Fatalf("Index followed a symlink out of the root: %+v", got)
	}
	if got := index(t, v, ""); len(got) != 0 {
		t.Fatalf("Index followed a symlink out of the root: %+v", got)
	}
	if _, _, err := v.Get(t.Context(), h, 0, -1); err == nil {
		t.Fatal("Get read a file outside the root")
	}
	if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err == nil {
		t.Fatal("Put wrote through a symlink out of the root")
	}
	if err := v.Trash(t.Context(), h); err == nil {
		t.Fatal("Trash acted on a file outside the root")
	}
	if err := v.EmptyTrash(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := files(t, outside)
	if len(got) != 1 || got[hash] != int64(len(data)) {
		t.Fatalf("files outside the root changed: %v", got)
	}
}

func TestConcurrentPutTrashGet(t *testing.T) {
	v := newVol(t, dirvolume.Config{Root: t.TempDir(), Reserve: -1, Compress: true,
		Policy: blockstore.TrashPolicy{Lifetime: time.Hour}})
	data := text(300 << 10)
	h := blockstore.HashOf(data)
	want := md5.Sum(data)
	done := make(chan struct{})
	errs := make(chan error, 3)
	go func() {
		defer func() { errs <- nil }()
		for i := 0; i < 20; i++ {
			if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer func() { errs <- nil }()
		for {
			select {
			case <-done:
				return
			default:
			}
			if err := v.Trash(t.Context(), h); err != nil && !blockstore.Is(err, blockstore.KindNotFound) {
				errs <- err
				return
			}
		}
	}()
	go func() {
		defer func() { errs <- nil }()
		for {
			select {
			case <-done:
				return
			default:
			}
			rc, _, err := v.Get(t.Context(), h, 0, -1)
			if blockstore.Is(err, blockstore.KindNotFound) {
				continue
			}
			if err != nil {
				errs <- err
				return
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || md5.Sum(got) != want {
				errs <- fmt.Errorf("concurrent Get returned bad data (%d bytes): %v", len(got), err)
				return
			}
		}
	}()
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	close(done)
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}
