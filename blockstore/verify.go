package blockstore

import (
	"context"
	"crypto/md5"
	"hash"
	"io"
)

// NewVerifyingReader returns a reader over r that yields exactly the bytes
// of the block h of the given size (size < 0: unknown, at most
// MaxBlockSize). It withholds the final chunk unless the MD5 of everything
// matches h and r ends exactly there, so a consumer that stops at io.EOF
// (io.Copy, io.ReadFull, an S3 upload) never sees a complete-looking but
// wrong body. Errors: KindHashMismatch, KindLengthMismatch (short or long
// body), KindTooLarge (unknown size over MaxBlockSize), or r's own error.
func NewVerifyingReader(r io.Reader, h Hash, size int64) io.Reader {
	if size < 0 {
		return &holdbackReader{r: r, want: h, md5: md5.New()}
	}
	return &sizedReader{r: r, want: h, size: size, md5: md5.New()}
}

type sizedReader struct {
	r    io.Reader
	want Hash
	size int64
	got  int64
	md5  hash.Hash
	err  error // sticky final state (io.EOF after success)
}

func (v *sizedReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if v.size == 0 {
		return 0, v.finish()
	}
	if len(p) == 0 {
		return 0, nil
	}
	if rem := v.size - v.got; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.r.Read(p)
	v.md5.Write(p[:n])
	v.got += int64(n)
	if v.got == v.size {
		if ferr := v.finish(); ferr != io.EOF {
			return 0, ferr // withhold the final chunk
		}
		return n, nil
	}
	if err == io.EOF {
		v.err = Errorf(KindLengthMismatch, "content length %d did not match specified data size %d", v.got, v.size)
		return 0, v.err
	}
	if err != nil {
		v.err = err
	}
	return n, err
}

// finish runs once all size bytes have been read: r must be at EOF and the
// hash must match. It returns io.EOF on success.
func (v *sizedReader) finish() error {
	var one [1]byte
	for {
		n, err := v.r.Read(one[:])
		if n > 0 {
			v.err = Errorf(KindLengthMismatch, "content is longer than the specified data size %d", v.size)
			return v.err
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			v.err = err
			return err
		}
	}
	if Hash(v.md5.Sum(nil)) != v.want {
		v.err = Errorf(KindHashMismatch, "content hash %x did not match specified locator %s", v.md5.Sum(nil), v.want)
		return v.err
	}
	v.err = io.EOF
	return io.EOF
}

// holdbackReader is used when the size is unknown: it always keeps the last
// byte read back until EOF has been seen and the hash checked.
type holdbackReader struct {
	r       io.Reader
	want    Hash
	md5     hash.Hash
	got     int64
	buf     []byte
	pending []byte
	err     error // io.EOF once verified
}

func (v *holdbackReader) Read(p []byte) (int, error) {
	for {
		if v.err == io.EOF && len(v.pending) > 0 || len(v.pending) > 1 {
			avail := v.pending
			if v.err != io.EOF {
				avail = avail[:len(avail)-1]
			}
			n := copy(p, avail)
			v.pending = v.pending[n:]
			return n, nil
		}
		if v.err != nil {
			return 0, v.err
		}
		if v.buf == nil {
			v.buf = make([]byte, 64<<10)
		}
		m := copy(v.buf, v.pending)
		n, err := v.r.Read(v.buf[m:])
		v.md5.Write(v.buf[m : m+n])
		v.got += int64(n)
		v.pending = v.buf[:m+n]
		switch {
		case v.got > MaxBlockSize:
			v.pending, v.err = nil, Errorf(KindTooLarge, "")
		case err == io.EOF && Hash(v.md5.Sum(nil)) != v.want:
			v.pending = nil
			v.err = Errorf(KindHashMismatch, "content hash %x did not match specified locator %s", v.md5.Sum(nil), v.want)
		case err != nil:
			if err != io.EOF {
				v.pending = nil
			}
			v.err = err
		}
	}
}

// VerifyingWriter passes writes to W while hashing them and withholds the
// write that completes the block unless the MD5 matches. Finish must be
// called at the end; it reports a short block.
type VerifyingWriter struct {
	W    io.Writer
	want Hash
	size int64
	got  int64
	md5  hash.Hash
}

// NewVerifyingWriter returns a writer for the block h of exactly size bytes.
// Mismatches are reported as KindCorrupt (the stored data is bad).
func NewVerifyingWriter(w io.Writer, h Hash, size int64) *VerifyingWriter {
	return &VerifyingWriter{W: w, want: h, size: size, md5: md5.New()}
}

func (v *VerifyingWriter) Write(p []byte) (int, error) {
	if v.got+int64(len(p)) > v.size {
		return 0, Errorf(KindCorrupt, "checksum mismatch in stored data: longer than %d bytes", v.size)
	}
	v.md5.Write(p)
	v.got += int64(len(p))
	if v.got == v.size && Hash(v.md5.Sum(nil)) != v.want {
		return 0, Errorf(KindCorrupt, "checksum mismatch in stored data")
	}
	return v.W.Write(p)
}

// Written is the number of bytes accepted so far.
func (v *VerifyingWriter) Written() int64 { return v.got }

// Finish reports an error if fewer than size bytes were written (or, for
// size 0, if the empty block's hash is not h).
func (v *VerifyingWriter) Finish() error {
	if v.got != v.size {
		return Errorf(KindCorrupt, "checksum mismatch in stored data: %d of %d bytes", v.got, v.size)
	}
	if v.size == 0 && Hash(v.md5.Sum(nil)) != v.want {
		return Errorf(KindCorrupt, "checksum mismatch in stored data")
	}
	return nil
}

// ContextReader returns a reader over r that fails with ctx's error once
// ctx is done (checked before every Read), so a long copy stops promptly
// when its request is cancelled.
func ContextReader(ctx context.Context, r io.Reader) io.Reader { return ctxReader{ctx, r} }

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
