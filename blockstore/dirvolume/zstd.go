package dirvolume

import (
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"
)

const (
	// chunkSize is Put's copy buffer, and the sample compressed to decide
	// whether a block is worth compressing.
	chunkSize = 256 << 10
	// minCompressSize: smaller blocks are always stored raw.
	minCompressSize = 512
	// zstWindow is the encoder's window: what a reader must hold in memory.
	zstWindow = 1 << 20
	// maxZstWindow is the largest window the decoder accepts, so that a
	// foreign or damaged file cannot make a Get allocate much.
	maxZstWindow = 8 << 20
)

// worthCompressing reports whether compressing n bytes to c bytes saves at
// least 1/8.
func worthCompressing(n, c int) bool { return c <= n-n/8 }

var bufPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// estimator compresses first chunks with EncodeAll, which is safe for
// concurrent use (up to GOMAXPROCS at a time).
var estimator = sync.OnceValues(func() (*zstd.Encoder, error) {
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(zstWindow),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(0))
})

// encPool holds streaming encoders. With concurrency 1 they compress
// synchronously and own no goroutines, so the pool may drop them freely.
var encPool sync.Pool

func getEncoder() (*zstd.Encoder, error) {
	if e, ok := encPool.Get().(*zstd.Encoder); ok {
		return e, nil
	}
	return zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithWindowSize(zstWindow),
		zstd.WithEncoderCRC(true),
		zstd.WithEncoderConcurrency(1))
}

func putEncoder(e *zstd.Encoder) {
	e.Reset(nil) // drop the reference to the file
	encPool.Put(e)
}

// decPool holds decoders; with concurrency 1 they decode synchronously and
// own no goroutines.
var decPool sync.Pool

func getDecoder(r io.Reader) (*zstd.Decoder, error) {
	if d, ok := decPool.Get().(*zstd.Decoder); ok {
		if err := d.Reset(r); err != nil {
			d.Close()
			return nil, err
		}
		return d, nil
	}
	return zstd.NewReader(r,
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(maxZstWindow))
}

func putDecoder(d *zstd.Decoder) {
	if d.Reset(nil) == nil {
		decPool.Put(d)
	}
}
