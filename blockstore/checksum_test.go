package blockstore

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

func testBlock(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31 + i>>9)
	}
	return b
}

func sumsOf(b []byte) *Checksums {
	var c ChunkHasher
	c.Write(b[:len(b)/3])
	c.Write(b[len(b)/3:])
	return c.Sum()
}

func TestChecksumsEncoding(t *testing.T) {
	data := testBlock(3*ChunkSize + 5)
	h := HashOf(data)
	c := sumsOf(data)
	if len(c.CRCs) != 4 || !c.Valid(int64(len(data))) {
		t.Fatalf("sums: %+v", c)
	}
	for i := 0; i < 4; i++ {
		end := min((i+1)*ChunkSize, len(data))
		if c.CRCs[i] != ChunkCRC(data[i*ChunkSize:end]) {
			t.Fatalf("chunk %d: incremental CRC differs", i)
		}
	}
	got, err := ParseChecksumsText(c.EncodeText(h), h, int64(len(data)))
	if err != nil || !got.Equal(c) {
		t.Fatalf("round trip: %v %+v", err, got)
	}
	enc := c.Marshal(h)
	other := HashOf([]byte("other"))
	flipped := bytes.Clone(enc)
	flipped[40] ^= 1
	for name, tc := range map[string]struct {
		b    []byte
		h    Hash
		size int64
	}{
		"flipped":       {flipped, h, -1},
		"another block": {enc, other, -1},
		"another size":  {enc, h, 17},
		"truncated":     {enc[:len(enc)-5], h, -1},
		"empty":         {nil, h, -1},
	} {
		if _, err := ParseChecksums(tc.b, tc.h, tc.size); !Is(err, KindCorrupt) {
			t.Errorf("%s: want KindCorrupt, got %v", name, err)
		}
	}
}

func TestChunkReader(t *testing.T) {
	data := testBlock(3*ChunkSize + 5)
	sums := sumsOf(data)
	read := func(src []byte, off, n int64) ([]byte, error) {
		start := ChunkStart(off)
		end := ChunkEnd(off+n, int64(len(data)))
		cr := NewChunkReader(io.NopCloser(bytes.NewReader(src[start:min(end, int64(len(src)))])), sums, off, n, "test")
		defer cr.Close()
		return io.ReadAll(iotest.HalfReader(cr))
	}
	for _, r := range [][2]int64{{0, int64(len(data))}, {5, 10}, {ChunkSize - 1, 2}, {2*ChunkSize + 3, ChunkSize + 2}, {7, 0}} {
		got, err := read(data, r[0], r[1])
		if err != nil || !bytes.Equal(got, data[r[0]:r[0]+r[1]]) {
			t.Fatalf("range %v: %d bytes, %v", r, len(got), err)
		}
	}
	bad := bytes.Clone(data)
	bad[2*ChunkSize+10] ^= 1
	got, err := read(bad, 0, int64(len(data)))
	if !Is(err, KindCorrupt) || !bytes.Equal(got, data[:2*ChunkSize]) {
		t.Fatalf("damaged chunk 2: want exactly chunks 0-1 then KindCorrupt, got %d bytes, %v", len(got), err)
	}
	if got, err := read(bad, 0, ChunkSize); err != nil || !bytes.Equal(got, data[:ChunkSize]) {
		t.Fatalf("range before the damage: %v", err)
	}
	got, err = read(data[:ChunkSize+100], 0, int64(len(data)))
	if !Is(err, KindCorrupt) || !bytes.Equal(got, data[:ChunkSize]) {
		t.Fatalf("truncated source: got %d bytes, %v", len(got), err)
	}
}

func TestPutReaderVouched(t *testing.T) {
	data := testBlock(2*ChunkSize + 1)
	h := HashOf(data)
	good := sumsOf(data)
	vouch := func(b []byte, s *Checksums) *PutReader {
		return NewPutReader(&Vouched{R: bytes.NewReader(b), Sums: func() (*Checksums, error) { return s, nil }}, h, int64(len(data)))
	}
	p := vouch(data, good)
	if got, err := io.ReadAll(p); err != nil || !bytes.Equal(got, data) || !p.Checksums().Equal(good) {
		t.Fatalf("good vouched body: %v", err)
	}
	// Damaged on the way: the final chunk is withheld.
	bad := bytes.Clone(data)
	bad[5] ^= 1
	got, err := io.ReadAll(vouch(bad, good))
	if !Is(err, KindHashMismatch) || len(got) >= len(data) {
		t.Fatalf("damaged vouched body: %d bytes, %v", len(got), err)
	}
	// Plain body: MD5, and the checksums of what it stored.
	p = NewPutReader(bytes.NewReader(data), h, -1)
	if _, err := io.ReadAll(p); err != nil || !p.Checksums().Equal(good) {
		t.Fatalf("MD5 body: %v", err)
	}
}
