package fanout

import (
	"crypto/md5"
	"hash"
	"sync"
	"sync/atomic"

	md5simd "github.com/minio/md5-simd"
)

// putHashes hands out the MD5 hashes of PUT bodies (the one MD5 pass of a
// replicated PUT). A lone upload gets Go's crypto/md5; while other uploads
// are hashing, a new one gets a lane of minio's md5-simd server, which
// hashes several streams in one AVX2/AVX-512 pass. Measured on this 2-core
// machine (64 MiB streams): four at once 1.39× faster with lanes, one alone
// 0.72× — so a lone stream never takes a lane.
var putHashes hashSource

type hashSource struct {
	once   sync.Once
	srv    md5simd.Server
	active atomic.Int32
}

// get returns a hash for one body and the func to call when it is done.
func (s *hashSource) get() (hash.Hash, func()) {
	n := s.active.Add(1)
	leave := func() { s.active.Add(-1) }
	if n < 2 {
		return md5.New(), leave
	}
	s.once.Do(func() { s.srv = md5simd.NewServer() })
	h := s.srv.NewHash()
	var closed atomic.Bool
	return h, func() {
		if !closed.Swap(true) {
			h.Close()
			leave()
		}
	}
}
