// Package volumetest is the conformance suite every blockstore.Volume and
// every Volume wrapper must pass. Drivers call Run from their tests.
package volumetest

import (
	"bytes"
	"context"
	"crypto/md5"
	"errors"
	"io"
	"math/rand/v2"
	"sort"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// Factory makes a fresh, empty volume with the given trash policy. It
// registers its own cleanup with t.
type Factory func(t *testing.T, p blockstore.TrashPolicy) blockstore.Volume

// Options tune the suite to a backend.
type Options struct {
	// MtimeResolution is the granularity of stored mtimes (S3: 1s). Tests
	// that need the mtime to move wait this long.
	MtimeResolution time.Duration
	// Skip64MiB skips the 64 MiB round trip (for slow quick runs only).
	Skip64MiB bool
}

// Block returns deterministic pseudo-random data of size n and its hash.
func Block(seed uint64, n int) ([]byte, blockstore.Hash) {
	data := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8; j++ {
			data[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		data[i] = byte(r.Uint32())
	}
	return data, blockstore.Hash(md5.Sum(data))
}

// Run runs the whole suite.
func Run(t *testing.T, newVol Factory, opt Options) {
	if opt.MtimeResolution <= 0 {
		opt.MtimeResolution = 10 * time.Millisecond
	}
	noTrash := blockstore.TrashPolicy{MinAge: 0, Lifetime: time.Hour}
	runChecksums(t, newVol)
	t.Run("RoundTrip", func(t *testing.T) {
		v := newVol(t, noTrash)
		sizes := []int{0, 1, 1 << 20, 1<<20 + 7}
		if !opt.Skip64MiB {
			sizes = append(sizes, blockstore.MaxBlockSize)
		}
		for i, n := range sizes {
			data, h := Block(uint64(i+1), n)
			if err := v.Put(ctx(t), h, bytes.NewReader(data), int64(n)); err != nil {
				t.Fatalf("Put %d bytes: %v", n, err)
			}
			checkContent(t, v, h, data)
			info, err := v.Stat(ctx(t), h)
			if err != nil || info.Size != int64(n) || info.Hash != h {
				t.Fatalf("Stat %d bytes: %+v %v", n, info, err)
			}
		}
	})
	t.Run("RangeReads", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(7, 100000)
		mustPut(t, v, h, data)
		for _, c := range []struct{ off, n, want int64 }{{0, 10, 10}, {99990, -1, 10}, {50000, 100, 100}, {99999, 5, 1}, {100000, 0, 0}} {
			rc, _, err := v.Get(ctx(t), h, c.off, c.n)
			if err != nil {
				t.Fatalf("Get(%d,%d): %v", c.off, c.n, err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, data[c.off:c.off+c.want]) {
				t.Fatalf("Get(%d,%d): got %d bytes, err %v", c.off, c.n, len(got), err)
			}
		}
		if _, _, err := v.Get(ctx(t), h, 100001, -1); !blockstore.Is(err, blockstore.KindBadRange) {
			t.Fatalf("Get past end: want BadRange, got %v", err)
		}
	})
	t.Run("Missing", func(t *testing.T) {
		v := newVol(t, noTrash)
		_, h := Block(99, 10)
		if _, _, err := v.Get(ctx(t), h, 0, -1); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("Get missing: want NotFound, got %v", err)
		}
		if _, err := v.Stat(ctx(t), h); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("Stat missing: want NotFound, got %v", err)
		}
		if err := v.Touch(ctx(t), h); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("Touch missing: want NotFound, got %v", err)
		}
		if err := v.Untrash(ctx(t), h); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("Untrash missing: want NotFound, got %v", err)
		}
	})
	t.Run("BadBodiesStoreNothing", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(11, 3<<20)
		bad := append([]byte(nil), data...)
		bad[len(bad)-1] ^= 0xff // wrong last chunk
		cases := []struct {
			name string
			r    io.Reader
			want blockstore.Kind
		}{
			{"short", bytes.NewReader(data[:len(data)-1]), blockstore.KindLengthMismatch},
			{"long", bytes.NewReader(append(append([]byte(nil), data...), 'x')), blockstore.KindLengthMismatch},
			{"wrong-last-chunk", bytes.NewReader(bad), blockstore.KindHashMismatch},
			{"wrong-last-chunk-onebyte", iotest.OneByteReader(bytes.NewReader(bad[len(bad)-4096:])), blockstore.KindLengthMismatch},
			{"failing", io.MultiReader(bytes.NewReader(data[:1<<20]), iotest.ErrReader(errors.New("client went away"))), blockstore.KindInternal},
		}
		for _, c := range cases {
			err := v.Put(ctx(t), h, c.r, int64(len(data)))
			if err == nil {
				t.Fatalf("%s: Put succeeded", c.name)
			}
			if c.want != blockstore.KindInternal && !blockstore.Is(err, c.want) {
				t.Errorf("%s: want kind %v, got %v (%v)", c.name, c.want, blockstore.KindOf(err), err)
			}
			assertAbsent(t, v, h, c.name)
		}
		// A small block with a wrong last byte too.
		small, sh := Block(12, 10)
		small[9] ^= 1
		if err := v.Put(ctx(t), sh, bytes.NewReader(small), 10); !blockstore.Is(err, blockstore.KindHashMismatch) {
			t.Fatalf("small wrong block: want HashMismatch, got %v", err)
		}
		assertAbsent(t, v, sh, "small wrong block")
	})
	t.Run("CancelledContextStoresNothing", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(13, 2<<20)
		c, cancel := context.WithCancel(context.Background())
		pr, pw := io.Pipe()
		go func() {
			pw.Write(data[:1<<20])
			cancel()
			time.Sleep(20 * time.Millisecond)
			pw.Write(data[1<<20:])
			pw.Close()
		}()
		if err := v.Put(c, h, pr, int64(len(data))); err == nil {
			t.Fatal("Put with cancelled context succeeded")
		}
		pr.CloseWithError(errors.New("done"))
		assertAbsent(t, v, h, "cancelled")
	})
	t.Run("ConcurrentPutsOfOneHash", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(14, 1<<20)
		var wg sync.WaitGroup
		errs := make(chan error, 8)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- v.Put(ctx(t), h, bytes.NewReader(data), int64(len(data)))
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("concurrent Put: %v", err)
			}
		}
		checkContent(t, v, h, data)
		if n := countIndex(t, v, ""); n != 1 {
			t.Fatalf("index has %d entries after concurrent puts of one block, want 1", n)
		}
	})
	t.Run("TouchAndRewriteRefreshMtime", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(15, 1000)
		mustPut(t, v, h, data)
		i1, _ := v.Stat(ctx(t), h)
		time.Sleep(opt.MtimeResolution + 5*time.Millisecond)
		if err := v.Touch(ctx(t), h); err != nil {
			t.Fatal(err)
		}
		i2, _ := v.Stat(ctx(t), h)
		if !i2.Mtime.After(i1.Mtime) {
			t.Fatalf("Touch did not advance mtime: %v then %v", i1.Mtime, i2.Mtime)
		}
		time.Sleep(opt.MtimeResolution + 5*time.Millisecond)
		mustPut(t, v, h, data)
		i3, _ := v.Stat(ctx(t), h)
		if !i3.Mtime.After(i2.Mtime) {
			t.Fatalf("re-Put did not advance mtime: %v then %v", i2.Mtime, i3.Mtime)
		}
	})
	t.Run("TrashUntrash", func(t *testing.T) {
		v := newVol(t, blockstore.TrashPolicy{MinAge: 0, Lifetime: time.Hour})
		data, h := Block(16, 1000)
		mustPut(t, v, h, data)
		if err := v.Trash(ctx(t), h); err != nil {
			t.Fatal(err)
		}
		assertAbsent(t, v, h, "trashed")
		if err := v.EmptyTrash(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := v.Untrash(ctx(t), h); err != nil {
			t.Fatalf("Untrash: %v", err)
		}
		checkContent(t, v, h, data)
	})
	t.Run("YoungBlocksAreNotTrashed", func(t *testing.T) {
		v := newVol(t, blockstore.TrashPolicy{MinAge: time.Hour, Lifetime: time.Hour})
		data, h := Block(17, 1000)
		mustPut(t, v, h, data)
		if err := v.Trash(ctx(t), h); err != nil {
			t.Fatal(err)
		}
		checkContent(t, v, h, data)
	})
	t.Run("EmptyTrashDeletesExpired", func(t *testing.T) {
		lifetime := 2*opt.MtimeResolution + 50*time.Millisecond
		v := newVol(t, blockstore.TrashPolicy{MinAge: 0, Lifetime: lifetime})
		data, h := Block(18, 1000)
		mustPut(t, v, h, data)
		if err := v.Trash(ctx(t), h); err != nil {
			t.Fatal(err)
		}
		time.Sleep(lifetime + opt.MtimeResolution)
		if err := v.EmptyTrash(ctx(t)); err != nil {
			t.Fatal(err)
		}
		if err := v.Untrash(ctx(t), h); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("Untrash after EmptyTrash: want NotFound, got %v", err)
		}
		assertAbsent(t, v, h, "deleted")
	})
	t.Run("IndexByPrefix", func(t *testing.T) {
		v := newVol(t, noTrash)
		var hashes []string
		for i := 0; i < 40; i++ {
			data, h := Block(uint64(100+i), 100+i)
			mustPut(t, v, h, data)
			hashes = append(hashes, h.String())
		}
		sort.Strings(hashes)
		for _, prefix := range []string{"", hashes[0][:1], hashes[5][:2], hashes[7][:3], hashes[9], "ffffffffff"} {
			want := 0
			for _, h := range hashes {
				if len(h) >= len(prefix) && h[:len(prefix)] == prefix {
					want++
				}
			}
			var got []blockstore.BlockInfo
			err := v.Index(ctx(t), prefix, func(i blockstore.BlockInfo) error { got = append(got, i); return nil })
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != want {
				t.Fatalf("Index(%q): %d entries, want %d", prefix, len(got), want)
			}
			for _, i := range got {
				if i.Mtime.IsZero() || i.Size < 100 {
					t.Fatalf("Index(%q): bad entry %+v", prefix, i)
				}
			}
		}
		stop := errors.New("stop")
		n := 0
		if err := v.Index(ctx(t), "", func(blockstore.BlockInfo) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
			t.Fatalf("Index did not stop at fn's error: n=%d err=%v", n, err)
		}
	})
	t.Run("ReadOnlyRefusesWrites", func(t *testing.T) {
		inner := newVol(t, noTrash)
		data, h := Block(19, 1000)
		mustPut(t, inner, h, data)
		v := blockstore.ReadOnly(inner)
		other, oh := Block(20, 1000)
		if err := v.Put(ctx(t), oh, bytes.NewReader(other), 1000); !blockstore.Is(err, blockstore.KindReadOnly) {
			t.Fatalf("read-only Put: want ReadOnly, got %v", err)
		}
		assertAbsent(t, inner, oh, "read-only put")
		for name, err := range map[string]error{"Touch": v.Touch(ctx(t), h), "Trash": v.Trash(ctx(t), h), "Untrash": v.Untrash(ctx(t), h)} {
			if !blockstore.Is(err, blockstore.KindReadOnly) {
				t.Fatalf("read-only %s: want ReadOnly, got %v", name, err)
			}
		}
		checkContent(t, v, h, data)
	})
}

func ctx(t *testing.T) context.Context { return t.Context() }

func mustPut(t *testing.T, v blockstore.Volume, h blockstore.Hash, data []byte) {
	t.Helper()
	if err := v.Put(ctx(t), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put: %v", err)
	}
}

func checkContent(t *testing.T, v blockstore.Volume, h blockstore.Hash, data []byte) {
	t.Helper()
	rc, info, err := v.Get(ctx(t), h, 0, -1)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("Get read: %v", err)
	}
	if !bytes.Equal(got, data) || info.Size != int64(len(data)) {
		t.Fatalf("Get: content differs (%d bytes, want %d; info size %d)", len(got), len(data), info.Size)
	}
}

func assertAbsent(t *testing.T, v blockstore.Volume, h blockstore.Hash, what string) {
	t.Helper()
	if _, err := v.Stat(ctx(t), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("%s: Stat: want NotFound, got %v", what, err)
	}
	if _, _, err := v.Get(ctx(t), h, 0, -1); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("%s: Get: want NotFound, got %v", what, err)
	}
	if n := countIndex(t, v, h.String()); n != 0 {
		t.Fatalf("%s: index lists the block", what)
	}
}

func countIndex(t *testing.T, v blockstore.Volume, prefix string) int {
	t.Helper()
	n := 0
	if err := v.Index(ctx(t), prefix, func(blockstore.BlockInfo) error { n++; return nil }); err != nil {
		t.Fatalf("Index: %v", err)
	}
	return n
}
