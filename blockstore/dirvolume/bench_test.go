package dirvolume_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/dirvolume"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

// BenchmarkPutGet writes and reads back a 64 MiB block: random data (stored
// raw either way) and text (compressed when enabled).
func BenchmarkPutGet(b *testing.B) {
	random, _ := volumetest.Block(1, blockstore.MaxBlockSize)
	for _, c := range []struct {
		name     string
		data     []byte
		compress bool
	}{
		{"random/raw", random, false},
		{"random/compress", random, true},
		{"text/raw", text(blockstore.MaxBlockSize), false},
		{"text/compress", text(blockstore.MaxBlockSize), true},
	} {
		h := blockstore.HashOf(c.data)
		b.Run(c.name+"/Put", func(b *testing.B) {
			v, err := dirvolume.New(dirvolume.Config{Root: b.TempDir(), Reserve: -1, Compress: c.compress})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				if err := v.Put(b.Context(), h, bytes.NewReader(c.data), int64(len(c.data))); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"/Get", func(b *testing.B) {
			v, err := dirvolume.New(dirvolume.Config{Root: b.TempDir(), Reserve: -1, Compress: c.compress})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			if err := v.Put(b.Context(), h, bytes.NewReader(c.data), int64(len(c.data))); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(c.data)))
			for b.Loop() {
				rc, _, err := v.Get(b.Context(), h, 0, -1)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.Copy(io.Discard, rc); err != nil {
					b.Fatal(err)
				}
				rc.Close()
			}
		})
	}
}
