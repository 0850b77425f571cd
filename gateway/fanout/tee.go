package fanout

import (
	"hash"
	"io"
	"sync"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// ChunkSize is the unit the windowed buffer allocates and frees.
const ChunkSize = 256 << 10

var chunkPool = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// Tee feeds one request body of a known size to several readers (one per
// upstream store) without holding the whole block: readers may lag the
// fastest by at most Window bytes. While nothing has been freed, a new
// reader can still start from offset 0 (to replace a store that failed
// early); after that, chunks every live reader has passed are released.
//
// The final chunk is published only after the body ended exactly at its
// declared size and — when the tee verifies — the MD5 of the whole body
// matched the block hash, so no upstream ever receives a complete copy of
// a wrong block. Without verification the stores' own check (every Keep
// store refuses a body that does not hash to the URL's hash) is what keeps
// a wrong block out.
type Tee struct {
	mu      sync.Mutex
	cond    *sync.Cond
	hash    blockstore.Hash
	size    int64
	window  int64
	chunks  []*[]byte // chunks[i] holds bytes [base+i*ChunkSize, ...)
	base    int64     // offset of chunks[0]
	filled  int64     // bytes published to readers
	readers map[*TeeReader]struct{}
	err     error     // terminal pump error (not io.EOF)
	writing int       // WriteTo calls currently writing from a chunk
	done    bool      // whole body published and verified
	md5     hash.Hash // nil: no verification here
	md5done func()    // gives the hash back (putHashes)
	// sums are the chunk checksums of the body, computed in the MD5 pass
	// (only when the tee verifies); final once done.
	sums blockstore.ChunkHasher
}

// NewTee makes a tee for a body of exactly size bytes naming block h;
// verify makes it check the MD5 itself.
func NewTee(h blockstore.Hash, size, window int64, verify bool) *Tee {
	if window < ChunkSize {
		window = ChunkSize
	}
	t := &Tee{hash: h, size: size, window: window, readers: map[*TeeReader]struct{}{}}
	if verify {
		t.md5, t.md5done = putHashes.get()
	}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// Pump reads body into the buffer until size bytes were verified, an error
// occurs, or every reader is gone. It returns nil on success.
func (t *Tee) Pump(body io.Reader) error {
	for {
		t.mu.Lock()
		for !t.done && t.err == nil && len(t.readers) > 0 && t.filled-t.minOffsetLocked() >= t.window {
			t.cond.Wait()
		}
		if t.done {
			t.mu.Unlock()
			return nil
		}
		if t.err != nil {
			err := t.err
			t.mu.Unlock()
			return err
		}
		if len(t.readers) == 0 && t.filled > 0 {
			t.mu.Unlock()
			return t.fail(blockstore.E("gateway.Tee", blockstore.KindUnavailable, "every upstream store failed during the upload"))
		}
		filled := t.filled
		t.mu.Unlock()

		want := t.size - filled
		if want > ChunkSize {
			want = ChunkSize
		}
		var chunk *[]byte
		if want > 0 {
			chunk = chunkPool.Get().(*[]byte)
		}
		n := 0
		var err error
		if want > 0 {
			n, err = io.ReadFull(body, (*chunk)[:want])
		}
		if err != nil {
			chunkPool.Put(chunk)
			if err == io.ErrUnexpectedEOF || err == io.EOF {
				err = blockstore.Errorf(blockstore.KindLengthMismatch, "content length %d did not match specified data size %d", filled+int64(n), t.size)
			}
			return t.fail(err)
		}
		if t.md5 != nil {
			t.md5.Write((*chunk)[:n])
			t.sums.Write((*chunk)[:n])
		}
		last := filled+int64(n) == t.size
		if last {
			var one [1]byte
			if m, _ := io.ReadFull(body, one[:]); m > 0 {
				chunkPool.Put(chunk)
				return t.fail(blockstore.Errorf(blockstore.KindLengthMismatch, "request body is longer than Content-Length %d", t.size))
			}
			if t.md5 != nil && blockstore.Hash(t.md5.Sum(nil)) != t.hash {
				chunkPool.Put(chunk)
				return t.fail(blockstore.Errorf(blockstore.KindHashMismatch, "content hash %x did not match specified locator %s", t.md5.Sum(nil), t.hash))
			}
		}
		t.mu.Lock()
		if chunk != nil {
			t.chunks = append(t.chunks, chunk)
		}
		t.filled += int64(n)
		t.done = last
		t.freeLocked()
		t.cond.Broadcast()
		t.mu.Unlock()
		if last {
			return nil
		}
	}
}

// Verifies reports whether the tee checks the body's MD5 itself.
func (t *Tee) Verifies() bool { return t.md5 != nil }

// Checksums are the chunk checksums of the verified body: nil unless the
// tee verifies and the whole body has been published (a reader has seen
// io.EOF). They were computed over the same bytes, in the same pass, as
// the MD5 that matched the block's name.
func (t *Tee) Checksums() *blockstore.Checksums {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.md5 == nil || !t.done {
		return nil
	}
	return t.sums.Sum()
}

func (t *Tee) fail(err error) error {
	t.mu.Lock()
	if t.err == nil {
		t.err = err
	}
	t.cond.Broadcast()
	t.mu.Unlock()
	return err
}

// Abort stops the tee; readers and Pump return err.
func (t *Tee) Abort(err error) { t.fail(err) }

func (t *Tee) minOffsetLocked() int64 {
	min := t.filled
	for r := range t.readers {
		if r.off < min {
			min = r.off
		}
	}
	return min
}

// freeLocked releases chunks every live reader has passed, but only once
// the body has outgrown the window (before that, offset 0 stays available
// for replacement readers).
func (t *Tee) freeLocked() {
	if t.filled <= t.window && !t.releasedAny() {
		return
	}
	min := t.minOffsetLocked()
	for len(t.chunks) > 0 && t.base+ChunkSize <= min {
		chunkPool.Put(t.chunks[0])
		t.chunks[0] = nil
		t.chunks = t.chunks[1:]
		t.base += ChunkSize
	}
}

func (t *Tee) releasedAny() bool { return t.base > 0 }

// CanRestart reports whether a new reader could still start at offset 0.
func (t *Tee) CanRestart() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.base == 0 && t.err == nil
}

// NewReader adds a reader starting at offset 0, or returns nil when offset 0
// is no longer held.
func (t *Tee) NewReader() *TeeReader {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.base != 0 || t.err != nil {
		return nil
	}
	r := &TeeReader{t: t, last: time.Now()}
	t.readers[r] = struct{}{}
	return r
}

// Release frees every chunk (call after Pump returned and all readers
// closed). It waits for writes still in progress from a chunk (an HTTP
// transport may finish writing a body after its response arrived).
func (t *Tee) Release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.writing > 0 {
		t.cond.Wait()
	}
	if t.md5done != nil {
		t.md5done()
		t.md5done = nil
	}
	for _, c := range t.chunks {
		if c != nil {
			chunkPool.Put(c)
		}
	}
	t.chunks = nil
	t.base = t.filled
}

// TeeReader is one consumer of a Tee. Close it when the upstream request
// is over so that it stops holding the window back.
type TeeReader struct {
	t      *Tee
	off    int64
	closed bool
	last   time.Time // last time this reader took data
}

// Stalled reports whether the reader has data waiting but has taken none
// for longer than idle (its upstream stopped reading).
func (r *TeeReader) Stalled(idle time.Duration) bool {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return !r.closed && r.off < r.t.filled && time.Since(r.last) > idle
}

// Offset is how many bytes this reader has delivered.
func (r *TeeReader) Offset() int64 {
	r.t.mu.Lock()
	defer r.t.mu.Unlock()
	return r.off
}

func (r *TeeReader) Read(p []byte) (int, error) {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		if r.closed {
			return 0, io.ErrClosedPipe
		}
		if t.err != nil {
			return 0, t.err
		}
		if r.off < t.filled {
			i := (r.off - t.base) / ChunkSize
			within := (r.off - t.base) % ChunkSize
			chunkLen := int64(ChunkSize)
			if end := t.base + (i+1)*ChunkSize; end > t.filled {
				chunkLen = t.filled - (t.base + i*ChunkSize)
			}
			n := copy(p, (*t.chunks[i])[within:chunkLen])
			r.off += int64(n)
			r.last = time.Now()
			t.cond.Broadcast() // the pump may be waiting for the slowest reader
			return n, nil
		}
		if t.done {
			return 0, io.EOF
		}
		t.cond.Wait()
	}
}

// Close detaches the reader.
func (r *TeeReader) Close() error {
	t := r.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if !r.closed {
		r.closed = true
		delete(t.readers, r)
		t.cond.Broadcast()
	}
	return nil
}

// WriteTo sends the reader's bytes to w straight from the shared chunks,
// without copying them through an intermediate buffer (io.Copy and the HTTP
// transport use it). A chunk cannot be freed while it is being written:
// Pump frees only chunks every reader's offset has passed, and Release
// waits for writes in progress.
func (r *TeeReader) WriteTo(w io.Writer) (int64, error) {
	t := r.t
	var total int64
	for {
		t.mu.Lock()
		var piece []byte
		for piece == nil {
			if r.closed {
				t.mu.Unlock()
				return total, io.ErrClosedPipe
			}
			if t.err != nil {
				err := t.err
				t.mu.Unlock()
				return total, err
			}
			if r.off < t.filled {
				i := (r.off - t.base) / ChunkSize
				within := (r.off - t.base) % ChunkSize
				chunkLen := int64(ChunkSize)
				if end := t.base + (i+1)*ChunkSize; end > t.filled {
					chunkLen = t.filled - (t.base + i*ChunkSize)
				}
				piece = (*t.chunks[i])[within:chunkLen]
				break
			}
			if t.done {
				t.mu.Unlock()
				return total, nil
			}
			t.cond.Wait()
		}
		t.writing++
		t.mu.Unlock()
		n, err := w.Write(piece)
		total += int64(n)
		t.mu.Lock()
		t.writing--
		r.off += int64(n)
		r.last = time.Now()
		t.cond.Broadcast()
		t.mu.Unlock()
		if err != nil {
			return total, err
		}
	}
}
