package blockstore

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// ChunkSize is the span of one chunk checksum: every block written by
// keepgate carries the CRC32C of each ChunkSize bytes (the last chunk may
// be shorter). Chosen by measurement (checksum_bench_test.go, on the
// 2-core bench machine): CRC32C runs at 11–17 GB/s for every chunk size
// from 16 KiB to 4 MiB (about 0.07 CPU-seconds per GiB), and a keepstore
// GET's inner loop (read a chunk from the page cache, check it, write it
// to a socket) moves 2.2–2.9 GB/s whatever the size, within the noise.
// So the size is chosen by what it costs elsewhere: 1 MiB keeps a 64 MiB
// block's list at 64 entries (296 bytes encoded: a tiny sidecar, an HTTP
// trailer line), equals the keepstore's copy buffer (one more buffer per
// transfer), and bounds what a range read reads beyond its bytes to under
// 2 MiB and the first-byte delay to one chunk.
const ChunkSize = 1 << 20

// castagnoli is the CRC32C table; hash/crc32 uses the CPU's CRC32
// instruction for it where there is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ChunkCRC is the CRC32C of p.
func ChunkCRC(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

// Checksums are the chunk checksums of one block: CRC32C of each
// ChunkSize chunk of its (uncompressed) bytes, in order. The empty block
// has none.
type Checksums struct {
	Size int64 // the block's size
	CRCs []uint32
}

// ChunkCount is the number of chunks of a block of size bytes.
func ChunkCount(size int64) int {
	if size <= 0 {
		return 0
	}
	return int((size + ChunkSize - 1) / ChunkSize)
}

// Valid reports whether c describes a block of size bytes: one CRC per
// chunk.
func (c *Checksums) Valid(size int64) bool {
	return c != nil && c.Size == size && len(c.CRCs) == ChunkCount(size)
}

// Equal reports whether c and o are the same list.
func (c *Checksums) Equal(o *Checksums) bool {
	if c == nil || o == nil || c.Size != o.Size || len(c.CRCs) != len(o.CRCs) {
		return false
	}
	for i := range c.CRCs {
		if c.CRCs[i] != o.CRCs[i] {
			return false
		}
	}
	return true
}

// Encoded form (sidecar files, S3 metadata, the PUT trailer), little
// endian:
//
//	magic "KGC1" | chunk size uint32 | block size uint64 | block hash [16]
//	| count uint32 | count × CRC32C uint32 | CRC32C of all the above uint32
//
// The hash binds the list to its block (a list copied from another block
// is refused), and the final CRC detects damage to the list itself.
const (
	checksumMagic  = "KGC1"
	checksumHeader = 4 + 4 + 8 + 16 + 4
)

// Marshal encodes c for block h.
func (c *Checksums) Marshal(h Hash) []byte {
	b := make([]byte, 0, checksumHeader+4*len(c.CRCs)+4)
	b = append(b, checksumMagic...)
	b = binary.LittleEndian.AppendUint32(b, ChunkSize)
	b = binary.LittleEndian.AppendUint64(b, uint64(c.Size))
	b = append(b, h[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(c.CRCs)))
	for _, v := range c.CRCs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return binary.LittleEndian.AppendUint32(b, ChunkCRC(b))
}

// ParseChecksums decodes checksums encoded by Marshal and checks that they
// are intact and belong to block h (of size bytes when size ≥ 0).
// Anything else is KindCorrupt: the checksum data is damaged, of another
// block, or of another chunk size.
func ParseChecksums(b []byte, h Hash, size int64) (*Checksums, error) {
	bad := func(why string) error {
		return Errorf(KindCorrupt, "chunk checksums of block %s are unusable: %s", h, why)
	}
	if len(b) < checksumHeader+4 || string(b[:4]) != checksumMagic {
		return nil, bad("not a keepgate checksum list")
	}
	body, sum := b[:len(b)-4], binary.LittleEndian.Uint32(b[len(b)-4:])
	if ChunkCRC(body) != sum {
		return nil, bad("the list itself is damaged")
	}
	if cs := binary.LittleEndian.Uint32(b[4:]); cs != ChunkSize {
		return nil, bad(fmt.Sprintf("chunk size %d, this keepstore uses %d", cs, ChunkSize))
	}
	c := &Checksums{Size: int64(binary.LittleEndian.Uint64(b[8:]))}
	if Hash(b[16:32]) != h {
		return nil, bad(fmt.Sprintf("they belong to block %x", b[16:32]))
	}
	n := binary.LittleEndian.Uint32(b[32:])
	if int(n) != ChunkCount(c.Size) || len(body) != checksumHeader+4*int(n) || c.Size > MaxBlockSize || c.Size < 0 {
		return nil, bad("wrong number of entries")
	}
	if size >= 0 && c.Size != size {
		return nil, bad(fmt.Sprintf("they describe %d bytes, the block has %d", c.Size, size))
	}
	c.CRCs = make([]uint32, n)
	for i := range c.CRCs {
		c.CRCs[i] = binary.LittleEndian.Uint32(b[checksumHeader+4*i:])
	}
	return c, nil
}

// EncodeText is Marshal in unpadded base64 (URL alphabet), for headers
// and object metadata.
func (c *Checksums) EncodeText(h Hash) string {
	return base64.RawURLEncoding.EncodeToString(c.Marshal(h))
}

// ParseChecksumsText decodes EncodeText's form (see ParseChecksums).
func ParseChecksumsText(s string, h Hash, size int64) (*Checksums, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return nil, Errorf(KindCorrupt, "chunk checksums of block %s are unusable: not base64", h)
	}
	return ParseChecksums(b, h, size)
}

// ChunkHasher computes the chunk checksums of bytes written to it in
// order. The zero value is ready to use.
type ChunkHasher struct {
	crcs []uint32
	cur  uint32 // CRC of the current, partial chunk
	fill int    // bytes in the current chunk
	n    int64
}

// Write adds p; it never fails.
func (c *ChunkHasher) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		k := min(len(p), ChunkSize-c.fill)
		c.cur = crc32.Update(c.cur, castagnoli, p[:k])
		c.fill += k
		p = p[k:]
		if c.fill == ChunkSize {
			c.crcs = append(c.crcs, c.cur)
			c.cur, c.fill = 0, 0
		}
	}
	c.n += int64(total)
	return total, nil
}

// Sum returns the checksums of everything written so far.
func (c *ChunkHasher) Sum() *Checksums {
	out := &Checksums{Size: c.n, CRCs: append([]uint32(nil), c.crcs...)}
	if c.fill > 0 {
		out.CRCs = append(out.CRCs, c.cur)
	}
	return out
}

// Written is the number of bytes written so far.
func (c *ChunkHasher) Written() int64 { return c.n }

// ChunkStart is the offset of the chunk holding byte off.
func ChunkStart(off int64) int64 { return off - off%ChunkSize }

// ChunkEnd is the end of the chunk holding byte end-1, at most size: what
// a verified read of bytes before end must read to.
func ChunkEnd(end, size int64) int64 {
	if end <= 0 {
		return 0
	}
	e := ChunkStart(end-1) + ChunkSize
	return min(e, size)
}
