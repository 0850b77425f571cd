package blockstore

import "io"

// Vouched is a PUT body whose sender has already checked that it hashes
// to the block's name, and vouches for its bytes with the chunk checksums
// it computed in that same pass (keepproxy, authenticated with its store
// write token). A Volume's Put (through NewPutReader) then checks every
// chunk's CRC32C against the sender's instead of hashing MD5 again: that
// covers what can still go wrong between the sender's hash and the disk
// (the network, either side's memory), at a fraction of the cost.
//
// Only the keepstore's HTTP layer builds a Vouched, and only for a request
// carrying the write token; any other body is MD5-verified.
type Vouched struct {
	R io.Reader
	// Sums returns the sender's checksums. It is called at most once, after
	// R has returned io.EOF (they travel in an HTTP trailer, which is only
	// there once the body has been read to its end).
	Sums func() (*Checksums, error)
}

func (v *Vouched) Read(p []byte) (int, error) { return v.R.Read(p) }

// PutReader is what a Volume's Put stores from: it yields exactly the
// bytes of block h, computes their chunk checksums on the way, and
// withholds the final chunk unless the body is proven to be the block —
// by its MD5 (NewVerifyingReader), or, for a Vouched body of known size,
// by matching every chunk's CRC32C to the sender's. Errors are those of
// NewVerifyingReader; a vouched chunk that does not match is
// KindHashMismatch.
type PutReader struct {
	r     io.Reader
	sums  ChunkHasher
	final *Checksums // set once the body ended verified
}

// NewPutReader returns the reader for storing block h of size bytes (size
// < 0: unknown) from r; see PutReader.
func NewPutReader(r io.Reader, h Hash, size int64) *PutReader {
	p := &PutReader{}
	if v, ok := r.(*Vouched); ok && size >= 0 {
		p.r = &vouchedReader{p: p, v: v, h: h, size: size}
		return p
	}
	if v, ok := r.(*Vouched); ok {
		r = v.R
	}
	p.r = NewVerifyingReader(hashing{p, r}, h, size)
	return p
}

func (p *PutReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err == io.EOF && p.final == nil {
		p.final = p.sums.Sum()
	}
	return n, err
}

// Checksums are the chunk checksums of the body; nil until Read has
// returned io.EOF (the body was complete and verified).
func (p *PutReader) Checksums() *Checksums { return p.final }

// hashing feeds what it reads into the PutReader's checksums.
type hashing struct {
	p *PutReader
	r io.Reader
}

func (h hashing) Read(b []byte) (int, error) {
	n, err := h.r.Read(b)
	h.p.sums.Write(b[:n])
	return n, err
}

// vouchedReader checks a Vouched body of known size: its length, then
// its chunk checksums against the sender's, before releasing the final
// read.
type vouchedReader struct {
	p    *PutReader
	v    *Vouched
	h    Hash
	size int64
	err  error // sticky; io.EOF once verified
}

func (r *vouchedReader) Read(b []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	got := r.p.sums.Written()
	if got == r.size {
		return 0, r.finish()
	}
	if len(b) == 0 {
		return 0, nil
	}
	if rem := r.size - got; int64(len(b)) > rem {
		b = b[:rem]
	}
	n, err := r.v.R.Read(b)
	r.p.sums.Write(b[:n])
	if r.p.sums.Written() == r.size {
		if ferr := r.finish(); ferr != io.EOF {
			return 0, ferr // withhold the final chunk
		}
		return n, nil
	}
	switch {
	case err == io.EOF:
		r.err = Errorf(KindLengthMismatch, "content length %d did not match specified data size %d", r.p.sums.Written(), r.size)
		return 0, r.err
	case err != nil:
		r.err = err
	}
	return n, err
}

// finish runs once size bytes have arrived: the body must end there, and
// every chunk must match the sender's checksum.
func (r *vouchedReader) finish() error {
	var one [1]byte
	for {
		n, err := r.v.R.Read(one[:])
		if n > 0 {
			r.err = Errorf(KindLengthMismatch, "content is longer than the specified data size %d", r.size)
			return r.err
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			r.err = err
			return err
		}
	}
	want, err := r.v.Sums()
	if err != nil {
		r.err = E("verify", KindHashMismatch, "the body's chunk checksums are missing or malformed", err)
		return r.err
	}
	got := r.p.sums.Sum()
	if !want.Valid(r.size) {
		r.err = Errorf(KindHashMismatch, "the body's chunk checksums do not describe a %d-byte block", r.size)
		return r.err
	}
	for i := range got.CRCs {
		if got.CRCs[i] != want.CRCs[i] {
			r.err = Errorf(KindHashMismatch, "chunk %d (bytes %d-) of block %s does not match the checksum its sender computed: the body was damaged on the way; nothing was stored", i, int64(i)*ChunkSize, r.h)
			return r.err
		}
	}
	r.err = io.EOF
	return io.EOF
}
