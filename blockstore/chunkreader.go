package blockstore

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// ChunkReader delivers bytes [off, off+n) of a block that has chunk
// checksums, checking each chunk before handing out any byte of it: it
// reads the whole chunk into its buffer (one ChunkSize buffer), compares
// its CRC32C with the stored one, and only then returns its bytes. A chunk
// that does not match, or that its source cannot deliver whole, is
// KindCorrupt and none of its bytes is returned; everything returned
// before it was checked. So a reader of a damaged copy gets a clean prefix
// and then an error, never a damaged byte, and a range read checks only
// the chunks it touches.
type ChunkReader struct {
	src   io.ReadCloser // the block's bytes from ChunkStart(off)
	sums  *Checksums
	what  string // for messages
	pos   int64  // offset of the next chunk to load
	skip  int64  // bytes of the next chunk before off
	end   int64  // off+n
	buf   *[]byte
	avail []byte // checked bytes not yet returned
	err   error  // sticky
}

// NewChunkReader returns a ChunkReader over src, which must yield the
// block's bytes from ChunkStart(off) up to at least ChunkEnd(off+n,
// sums.Size). what names the copy in error messages (e.g. a path). Close
// closes src.
func NewChunkReader(src io.ReadCloser, sums *Checksums, off, n int64, what string) *ChunkReader {
	start := ChunkStart(off)
	c := &ChunkReader{src: src, sums: sums, what: what, pos: start, skip: off - start, end: off + n}
	if n <= 0 {
		c.pos, c.skip = c.end, 0
	}
	return c
}

// Prime reads and checks the first chunk now, so that a damaged start is
// reported before the caller commits to answering.
func (c *ChunkReader) Prime() error {
	if len(c.avail) == 0 && c.err == nil && c.pos < c.end {
		c.load()
	}
	return c.err
}

func (c *ChunkReader) load() {
	if c.buf == nil {
		c.buf = chunkBufs.Get().(*[]byte)
	}
	i := c.pos / ChunkSize
	clen := min(int64(ChunkSize), c.sums.Size-c.pos)
	if i >= int64(len(c.sums.CRCs)) || clen <= 0 {
		c.err = E("chunk", KindCorrupt, fmt.Sprintf("checksum mismatch in stored data: read past the end of %s", c.what))
		return
	}
	b := (*c.buf)[:clen]
	k, err := io.ReadFull(c.src, b)
	switch {
	case err == nil:
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		c.err = E("chunk", KindCorrupt, fmt.Sprintf("checksum mismatch in stored data: %s ends %d bytes early", c.what, c.sums.Size-c.pos-int64(k)))
		return
	default:
		c.err = err
		return
	}
	if ChunkCRC(b) != c.sums.CRCs[i] {
		c.err = E("chunk", KindCorrupt, fmt.Sprintf("checksum mismatch in stored data: chunk %d (bytes %d-%d) of %s does not match its CRC32C", i, c.pos, c.pos+clen-1, c.what))
		return
	}
	c.avail = b[c.skip:min(clen, c.end-c.pos)]
	c.pos += clen
	c.skip = 0
}

func (c *ChunkReader) Read(p []byte) (int, error) {
	for len(c.avail) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.pos >= c.end {
			return 0, io.EOF
		}
		c.load()
	}
	n := copy(p, c.avail)
	c.avail = c.avail[n:]
	return n, nil
}

// Next returns up to max checked bytes straight from the chunk buffer,
// valid until the next call or Close; io.EOF after the last byte.
func (c *ChunkReader) Next(max int) ([]byte, error) {
	for len(c.avail) == 0 {
		if c.err != nil {
			return nil, c.err
		}
		if c.pos >= c.end {
			return nil, io.EOF
		}
		c.load()
	}
	k := min(max, len(c.avail))
	b := c.avail[:k]
	c.avail = c.avail[k:]
	return b, nil
}

// WriteTo writes the remaining bytes to w straight from the chunk buffer.
func (c *ChunkReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for {
		for len(c.avail) == 0 {
			if c.err != nil {
				return total, c.err
			}
			if c.pos >= c.end {
				return total, nil
			}
			c.load()
		}
		n, err := w.Write(c.avail)
		total += int64(n)
		c.avail = c.avail[n:]
		if err != nil {
			return total, err
		}
	}
}

// Close closes the source and returns the buffer.
func (c *ChunkReader) Close() error {
	if c.buf != nil {
		chunkBufs.Put(c.buf)
		c.buf, c.avail = nil, nil
	}
	if c.err == nil {
		c.err = errors.New("chunk reader: read after Close")
	}
	if c.src == nil {
		return nil
	}
	err := c.src.Close()
	c.src = nil
	return err
}
