package volumetest

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// sumsOf computes the chunk checksums of data.
func sumsOf(data []byte) *blockstore.Checksums {
	var c blockstore.ChunkHasher
	c.Write(data)
	return c.Sum()
}

// vouched wraps data as a body vouched for by sums.
func vouched(data []byte, sums *blockstore.Checksums) io.Reader {
	return &blockstore.Vouched{R: bytes.NewReader(data), Sums: func() (*blockstore.Checksums, error) { return sums, nil }}
}

// runChecksums checks the chunk-checksum clauses of the Volume contract:
// Put stores the checksums of what it verified and Get returns them (for
// every range); a Vouched body is checked against its sender's checksums
// (one wrong chunk: nothing stored); SetChecksums gives a block checksums.
func runChecksums(t *testing.T, newVol Factory) {
	noTrash := blockstore.TrashPolicy{MinAge: 0, Lifetime: time.Hour}
	t.Run("PutStoresChecksums", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(40, 2*blockstore.ChunkSize+7)
		mustPut(t, v, h, data)
		want := sumsOf(data)
		for _, r := range [][2]int64{{0, -1}, {blockstore.ChunkSize, blockstore.ChunkSize}, {2 * blockstore.ChunkSize, -1}} {
			rc, info, err := v.Get(ctx(t), h, r[0], r[1])
			if err != nil {
				t.Fatal(err)
			}
			rc.Close()
			if !info.Checksums.Equal(want) {
				t.Fatalf("Get(%d, %d): checksums %+v, want %+v", r[0], r[1], info.Checksums, want)
			}
		}
		// A verified range read through them.
		rc, info, err := v.Get(ctx(t), h, blockstore.ChunkSize, -1)
		if err != nil {
			t.Fatal(err)
		}
		cr := blockstore.NewChunkReader(rc, info.Checksums, blockstore.ChunkSize+5, blockstore.ChunkSize, "test")
		got, err := io.ReadAll(cr)
		cr.Close()
		if err != nil || !bytes.Equal(got, data[blockstore.ChunkSize+5:2*blockstore.ChunkSize+5]) {
			t.Fatalf("chunk-checked range read: %d bytes, %v", len(got), err)
		}
	})
	t.Run("VouchedPut", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(41, 3*blockstore.ChunkSize)
		sums := sumsOf(data)
		bad := &blockstore.Checksums{Size: sums.Size, CRCs: append([]uint32(nil), sums.CRCs...)}
		bad.CRCs[1] ^= 1
		if err := v.Put(ctx(t), h, vouched(data, bad), int64(len(data))); !blockstore.Is(err, blockstore.KindHashMismatch) {
			t.Fatalf("vouched Put with one wrong chunk checksum: want HashMismatch, got %v", err)
		}
		assertAbsent(t, v, h, "vouched put with a wrong checksum")
		// Damage on the way: the bytes differ from what the sender hashed.
		damaged := append([]byte(nil), data...)
		damaged[blockstore.ChunkSize+100] ^= 0x10
		if err := v.Put(ctx(t), h, vouched(damaged, sums), int64(len(data))); !blockstore.Is(err, blockstore.KindHashMismatch) {
			t.Fatalf("vouched Put of damaged bytes: want HashMismatch, got %v", err)
		}
		assertAbsent(t, v, h, "vouched put of damaged bytes")
		if err := v.Put(ctx(t), h, vouched(data[:len(data)-1], sums), int64(len(data))); !blockstore.Is(err, blockstore.KindLengthMismatch) {
			t.Fatalf("short vouched Put: want LengthMismatch, got %v", err)
		}
		assertAbsent(t, v, h, "short vouched put")
		if err := v.Put(ctx(t), h, vouched(data, sums), int64(len(data))); err != nil {
			t.Fatalf("vouched Put: %v", err)
		}
		checkContent(t, v, h, data)
	})
	t.Run("SetChecksums", func(t *testing.T) {
		v := newVol(t, noTrash)
		data, h := Block(42, blockstore.ChunkSize+1)
		if err := v.SetChecksums(ctx(t), h, sumsOf(data)); !blockstore.Is(err, blockstore.KindNotFound) {
			t.Fatalf("SetChecksums of a missing block: want NotFound, got %v", err)
		}
		mustPut(t, v, h, data)
		if err := v.SetChecksums(ctx(t), h, sumsOf(data)); err != nil {
			t.Fatal(err)
		}
		rc, info, err := v.Get(ctx(t), h, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if !info.Checksums.Equal(sumsOf(data)) {
			t.Fatalf("checksums after SetChecksums: %+v", info.Checksums)
		}
		if err := blockstore.ReadOnly(v).SetChecksums(ctx(t), h, sumsOf(data)); !blockstore.Is(err, blockstore.KindReadOnly) {
			t.Fatalf("read-only SetChecksums: want ReadOnly, got %v", err)
		}
	})
}
