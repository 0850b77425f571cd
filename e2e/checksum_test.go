package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// Chunk checksums end to end: real keepproxy and keepstores, faults made
// by editing the stores' files in place. In every case no damaged byte
// reaches a client inside a 200/206, and the damage is counted.

// storeMetric sums a counter of a keepstore's /metrics over its labels
// whose line contains match.
func storeMetric(t *testing.T, s *testenv.Store, name, match string) float64 {
	t.Helper()
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		if (strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ")) && strings.Contains(line, match) {
			var v float64
			f := strings.Fields(line)
			fmt.Sscan(f[len(f)-1], &v)
			sum += v
		}
	}
	return sum
}

// flipInPlace flips one byte of a file without replacing it (the open
// file keeps seeing the change, as with a disk that rots under a reader).
func flipInPlace(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b [1]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x20
	if _, err := f.WriteAt(b[:], off); err != nil {
		t.Fatal(err)
	}
}

func sidecar(s *testenv.Store, hash string) string { return s.BlockPath(hash) + ".crc32c" }

// get reads a block (or a Range of it) through keepproxy.
func get(t *testing.T, c *testenv.Cluster, loc, rng string) (int, []byte, error) {
	t.Helper()
	req, _ := http.NewRequest("GET", c.ProxyURL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// TestChecksumPausedReaderBothCopiesRot is the case found from outside: a
// client reads 1 MiB of a 64 MiB block with two copies, pauses, a byte
// rots in place in both copies, and the client reads on. Before chunk
// checksums it got 200, every byte and a wrong MD5, and no counter moved
// (the store had checked one read of the file and sent another, and the
// proxy trusted its "verified" header). Now each store stops before the bad
// chunk, counts the copy, the proxy fails over and then gives up: the body
// ends short, every byte received is right, and the corrupt counters move.
func TestChecksumPausedReaderBothCopiesRot(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	data, h := volumetest.Block(1201, blockstore.MaxBlockSize)
	resp, loc := put(t, c, data, 2)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, loc)
	}
	req, _ := http.NewRequest("GET", c.ProxyURL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	// A small, fixed receive buffer (no autotuning), so that what is in
	// flight when the client pauses stays far below the damaged byte.
	small := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 64<<10) })
	}}
	pausing := &http.Client{Transport: &http.Transport{DialContext: small.DialContext, DisableKeepAlives: true}}
	gr, err := pausing.Do(req)
	if err != nil || gr.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, gr)
	}
	defer gr.Body.Close()
	var got bytes.Buffer
	if _, err := io.CopyN(&got, gr.Body, 1<<20); err != nil {
		t.Fatal(err)
	}
	const at = 48 << 20 // far beyond what the socket buffers between them can hold
	for _, s := range c.Stores {
		flipInPlace(t, s.BlockPath(h.String()), at)
	}
	_, err = io.Copy(&got, gr.Body)
	if err == nil || got.Len() >= len(data) {
		t.Fatalf("the client read on to the end (%d bytes, err %v): a rotten copy was served as a clean 200", got.Len(), err)
	}
	if !bytes.Equal(got.Bytes(), data[:got.Len()]) {
		t.Fatal("a damaged byte reached the client")
	}
	if got.Len() > at {
		t.Fatalf("%d bytes received, past the damaged byte at %d", got.Len(), at)
	}
	for _, s := range c.Stores {
		if n := storeMetric(t, s, "keepstore_corrupt_blocks_total", ""); n < 1 {
			t.Errorf("store %d did not count its damaged copy", s.Index)
		}
	}
	if n := metric(t, c, "keepproxy_corrupt_reads_total"); n < 1 {
		t.Errorf("keepproxy_corrupt_reads_total = %v, want ≥ 1", n)
	}
	// A PUT of the block rewrites the copies known to be bad.
	if resp, _ := put(t, c, data, 2); resp.StatusCode != 200 {
		t.Fatalf("re-PUT: %d", resp.StatusCode)
	}
	if code, b, err := get(t, c, loc, ""); code != 200 || err != nil || !bytes.Equal(b, data) {
		t.Fatalf("GET after the re-PUT: %d, %d bytes, %v", code, len(b), err)
	}
}

// TestChecksumFaults: one damaged copy of each kind, the other copy
// sound. Every GET gets the whole, right block (the bad store stops short
// or refuses, the proxy resumes from the other with Range); damaged or
// missing checksum data is not taken for damaged data: the block is
// verified by its MD5 and gets its checksums back.
func TestChecksumFaults(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	const size = 5<<20 + 4321
	seed := uint64(1300)
	newBlock := func(t *testing.T) ([]byte, blockstore.Hash, string, *testenv.Store) {
		seed++
		data, h := volumetest.Block(seed, size)
		resp, loc := put(t, c, data, 2)
		if resp.StatusCode != 200 {
			t.Fatalf("PUT: %d %s", resp.StatusCode, loc)
		}
		for _, s := range c.Stores {
			if _, err := os.Stat(sidecar(s, h.String())); err != nil {
				t.Fatalf("store %d has no checksum file after a PUT: %v", s.Index, err)
			}
		}
		return data, h, loc, probeOrder(c, h.String())[0]
	}
	wantWhole := func(t *testing.T, loc string, data []byte) {
		t.Helper()
		code, b, err := get(t, c, loc, "")
		if code != 200 || err != nil || !bytes.Equal(b, data) {
			t.Fatalf("GET: %d, %d bytes, equal=%v, %v", code, len(b), bytes.Equal(b, data), err)
		}
	}
	wantCounted := func(t *testing.T, s *testenv.Store, before float64) {
		t.Helper()
		if n := storeMetric(t, s, "keepstore_corrupt_blocks_total", ""); n <= before {
			t.Errorf("store %d did not count the damaged copy (%v)", s.Index, n)
		}
	}
	wantSidecarRestored := func(t *testing.T, s *testenv.Store, h blockstore.Hash) {
		t.Helper()
		b, err := os.ReadFile(sidecar(s, h.String()))
		if err != nil {
			t.Fatalf("checksum file not restored: %v", err)
		}
		if _, err := blockstore.ParseChecksums(b, h, size); err != nil {
			t.Fatalf("restored checksum file: %v", err)
		}
	}

	t.Run("FlippedMidBlock", func(t *testing.T) {
		data, h, loc, first := newBlock(t)
		before := storeMetric(t, first, "keepstore_corrupt_blocks_total", "")
		flipInPlace(t, first.BlockPath(h.String()), 3<<20+17)
		wantWhole(t, loc, data)
		wantCounted(t, first, before)
	})
	t.Run("FlippedInLastChunk", func(t *testing.T) {
		data, h, loc, first := newBlock(t)
		before := storeMetric(t, first, "keepstore_corrupt_blocks_total", "")
		flipInPlace(t, first.BlockPath(h.String()), size-2)
		wantWhole(t, loc, data)
		wantCounted(t, first, before)
	})
	t.Run("FlippedInFirstChunk", func(t *testing.T) {
		// Found before the headers: the store answers 502, the other serves.
		data, h, loc, first := newBlock(t)
		flipInPlace(t, first.BlockPath(h.String()), 5)
		wantWhole(t, loc, data)
	})
	t.Run("RangeVerifiesOnlyItsChunks", func(t *testing.T) {
		data, h, loc, first := newBlock(t)
		before := storeMetric(t, first, "keepstore_corrupt_blocks_total", "")
		flipInPlace(t, first.BlockPath(h.String()), 4<<20+1)
		// Bytes of chunks 1–2 straight from the store: damage unseen.
		req, _ := http.NewRequest("GET", first.URL+"/"+loc, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", 1<<20+10, 3<<20-1))
		req.Header.Set("Authorization", "Bearer "+testenv.TokenRW) // the locator is signed for it
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 206 || err != nil || !bytes.Equal(b, data[1<<20+10:3<<20]) || resp.Header.Get(keepwire.DataVerified) != keepwire.VerifiedChunks {
			t.Fatalf("range before the damage: %d %d bytes %v %v", resp.StatusCode, len(b), err, resp.Header)
		}
		if n := storeMetric(t, first, "keepstore_corrupt_blocks_total", ""); n != before {
			t.Fatalf("a range read checked a chunk it does not touch")
		}
		// Through the proxy too.
		code, b, err := get(t, c, loc, fmt.Sprintf("bytes=%d-%d", 1<<20+10, 3<<20-1))
		if code != 206 || err != nil || !bytes.Equal(b, data[1<<20+10:3<<20]) {
			t.Fatalf("range before the damage through keepproxy: %d %d bytes %v", code, len(b), err)
		}
		// A range through the damaged chunk: the right bytes, from the other.
		code, b, err = get(t, c, loc, fmt.Sprintf("bytes=%d-", 4<<20))
		if code != 206 || err != nil || !bytes.Equal(b, data[4<<20:]) {
			t.Fatalf("range through the damage: %d %d bytes %v", code, len(b), err)
		}
		wantCounted(t, first, before)
	})
	t.Run("TruncatedBlockFile", func(t *testing.T) {
		data, h, loc, first := newBlock(t)
		if err := os.Truncate(first.BlockPath(h.String()), 2<<20+5); err != nil {
			t.Fatal(err)
		}
		before := storeMetric(t, first, "keepstore_corrupt_blocks_total", "")
		wantWhole(t, loc, data)
		wantCounted(t, first, before)
	})
	t.Run("FlippedChecksumData", func(t *testing.T) {
		data, h, loc, first := newBlock(t)
		flipInPlace(t, sidecar(first, h.String()), 40) // inside the CRC list
		before := storeMetric(t, first, "keepstore_corrupt_blocks_total", "")
		wantWhole(t, loc, data)
		if n := storeMetric(t, first, "keepstore_corrupt_blocks_total", ""); n != before {
			t.Error("damaged checksum data was taken for a damaged block")
		}
		wantSidecarRestored(t, first, h)
	})
	t.Run("MissingChecksumFile", func(t *testing.T) {
		data, h, loc, _ := newBlock(t)
		for _, s := range c.Stores {
			os.Remove(sidecar(s, h.String()))
		}
		first := probeOrder(c, h.String())[0]
		before := storeMetric(t, first, "keepstore_checksums_added_total", "")
		wantWhole(t, loc, data)
		if n := storeMetric(t, first, "keepstore_checksums_added_total", ""); n != before+1 {
			t.Errorf("keepstore_checksums_added_total %v → %v, want one more", before, n)
		}
		wantSidecarRestored(t, first, h)
	})
	t.Run("ChecksumsOfAnotherBlock", func(t *testing.T) {
		data, h, loc, first := newBlock(t)
		_, oh, _, _ := newBlock(t)
		other, err := os.ReadFile(sidecar(first, oh.String()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(sidecar(first, h.String()), other, 0o600); err != nil {
			t.Fatal(err)
		}
		wantWhole(t, loc, data)
		wantSidecarRestored(t, first, h)
	})
	t.Run("OldBlockAndDamagedCopy", func(t *testing.T) {
		// Written before checksums: verified whole by MD5 (a bad copy is
		// skipped before the first byte), and a good one gains them.
		data, h, loc, first := newBlock(t)
		for _, s := range c.Stores {
			os.Remove(sidecar(s, h.String()))
		}
		flipInPlace(t, first.BlockPath(h.String()), 1<<20)
		before := storeMetric(t, first, "keepstore_corrupt_blocks_total", "")
		wantWhole(t, loc, data)
		wantCounted(t, first, before)
		if _, err := os.Stat(sidecar(first, h.String())); err == nil {
			t.Error("a damaged copy was given checksums")
		}
		wantSidecarRestored(t, probeOrder(c, h.String())[1], h)
	})
}

// TestChecksumPuts: the proxy's PUT is MD5-hashed once (the stores check
// its chunk checksums instead, and say so in a metric); a PUT carrying the
// proxy's write token with one wrong chunk checksum stores nothing; a PUT
// with checksums but without that token is MD5-verified like any other.
func TestChecksumPuts(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	data, _ := volumetest.Block(1400, 3<<20+5)
	if resp, loc := put(t, c, data, 2); resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, loc)
	}
	for _, s := range c.Stores {
		if n := storeMetric(t, s, "keepstore_put_verifications_total", `by="chunk_checksums"`); n != 1 {
			t.Errorf("store %d: %v PUTs verified by chunk checksums, want 1", s.Index, n)
		}
		if n := storeMetric(t, s, "keepstore_put_verifications_total", `by="md5"`); n != 0 {
			t.Errorf("store %d hashed the proxy's PUT again (%v)", s.Index, n)
		}
	}

	s := c.Stores[0]
	var sums blockstore.ChunkHasher
	other, oh := volumetest.Block(1401, 3<<20+5)
	sums.Write(other)
	good := sums.Sum()
	badSums := &blockstore.Checksums{Size: good.Size, CRCs: append([]uint32(nil), good.CRCs...)}
	badSums.CRCs[2] ^= 0x100
	damaged := bytes.Clone(other)
	damaged[100] ^= 1
	var dsum blockstore.ChunkHasher
	dsum.Write(damaged)
	cases := []struct {
		name  string
		token string
		body  []byte
		sums  *blockstore.Checksums
		want  int
	}{
		// The write token and one wrong checksum: refused, nothing stored.
		{"write token, one wrong chunk checksum", testenv.WriteToken, other, badSums, 400},
		// Claiming to be the proxy (damaged bytes, their own checksums)
		// with the admin token, not the write token: MD5-verified.
		{"admin token, checksums of damaged bytes", testenv.AdminToken, damaged, dsum.Sum(), 400},
	}
	for _, tc := range cases {
		code := putWithTrailer(t, s.URL, tc.token, oh, tc.body, tc.sums)
		if code != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, code, tc.want)
		}
		if s.Has(oh.String()) {
			t.Fatalf("%s: the block was stored", tc.name)
		}
		if _, err := os.Stat(sidecar(s, oh.String())); err == nil {
			t.Fatalf("%s: a checksum file was left", tc.name)
		}
		entries, _ := os.ReadDir(filepath.Dir(s.BlockPath(oh.String())))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".tmp-") {
				t.Errorf("%s: temp file left: %s", tc.name, e.Name())
			}
		}
	}
	// Right bytes with wrong checksums and without the write token: the
	// trailer is ignored, the MD5 matches, the block is stored.
	if code := putWithTrailer(t, s.URL, testenv.AdminToken, oh, other, badSums); code != 200 {
		t.Fatalf("admin PUT with a wrong trailer: %d, want 200 (MD5-verified)", code)
	}
	if n := storeMetric(t, s, "keepstore_put_verifications_total", `by="md5"`); n != 1 {
		t.Errorf("md5-verified PUTs: %v, want 1", n)
	}
}

// putWithTrailer PUTs body to a keepstore as keepproxy does: chunked, with
// sums in the chunk-checksum trailer.
func putWithTrailer(t *testing.T, base, token string, h blockstore.Hash, body []byte, sums *blockstore.Checksums) int {
	t.Helper()
	req, _ := http.NewRequest("PUT", fmt.Sprintf("%s/%s+%d", base, h, len(body)), io.NopCloser(bytes.NewReader(body)))
	req.ContentLength = -1
	req.Trailer = http.Header{keepwire.ChunkChecksums: {sums.EncodeText(h)}}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
