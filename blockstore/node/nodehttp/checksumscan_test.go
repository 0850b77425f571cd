package nodehttp

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/dirvolume"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

// TestChecksumScan: POST /checksums gives every block of a volume that has
// no chunk checksums its checksums (a damaged one is counted instead);
// GET reports progress; only the admin token may use it.
func TestChecksumScan(t *testing.T) {
	m, _, mv := memMount(mountSpec{uuid: "zzzzz-nyw5e-aaaaaaaaaaaaaaa"})
	e := newEnv(t, []node.Mount{m}, func(o *envOptions) { o.RequireSignatures = false })
	var hashes []blockstore.Hash
	var datas [][]byte
	for i := 0; i < 4; i++ {
		data, h := volumetest.Block(uint64(500+i), 1<<20+i*1000)
		mv.Put(context.Background(), h, bytes.NewReader(data), int64(len(data)))
		mv.DropChecksums(h)
		hashes, datas = append(hashes, h), append(datas, data)
	}
	bad := bytes.Clone(datas[3])
	bad[7] ^= 1
	mv.Corrupt(hashes[3], bad)

	if r := e.do("POST", "/checksums", nil); r.Code != 401 {
		t.Fatalf("without a token: %d", r.Code)
	}
	if r := e.do("POST", "/checksums?rate=abc", nil, "Authorization: Bearer "+adminTok); r.Code != 400 {
		t.Fatalf("bad rate: %d", r.Code)
	}
	if r := e.do("POST", "/checksums?mount=nope", nil, "Authorization: Bearer "+adminTok); r.Code != 404 {
		t.Fatalf("unknown mount: %d", r.Code)
	}
	r := e.do("POST", "/checksums?rate=1000000000", nil, "Authorization: Bearer "+adminTok)
	if r.Code != 200 {
		t.Fatalf("start: %d %s", r.Code, r.Body)
	}
	var st node.ScanStatus
	for {
		r = e.do("GET", "/checksums", nil, "Authorization: Bearer "+adminTok)
		if err := json.Unmarshal([]byte(r.Body), &st); err != nil {
			t.Fatalf("status: %v %q", err, r.Body)
		}
		if !st.Running {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Blocks != 4 || st.Added != 3 || st.Damaged != 1 || st.Error != "" {
		t.Fatalf("scan status: %+v", st)
	}
	for i, h := range hashes[:3] {
		rc, info, err := mv.Get(context.Background(), h, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		rc.Close()
		if info.Checksums == nil {
			t.Fatalf("block %d has no checksums after the scan", i)
		}
		got := e.do("GET", "/"+h.String()+"+"+itoa(len(datas[i])), nil)
		if got.Code != 200 || got.Body != string(datas[i]) || got.Header.Get(keepwire.DataVerified) != keepwire.VerifiedChunks {
			t.Fatalf("block %d after the scan: %d %v", i, got.Code, got.Header)
		}
	}
	if n := e.metric("keepstore_corrupt_blocks_total"); n == "" {
		t.Error("the damaged block was not counted")
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestOldBlockRangeReadGainsChecksums: on a VerifyFirst directory mount, a
// range read of a block without checksums checks the whole copy by MD5
// first, gives it checksums, and is then served chunk-checked; on a
// read-only mount it is served unverified (it could not keep them).
func TestOldBlockRangeReadGainsChecksums(t *testing.T) {
	for _, ro := range []bool{false, true} {
		root := t.TempDir()
		vol, err := dirvolume.New(dirvolume.Config{Root: root, Reserve: -1})
		if err != nil {
			t.Fatal(err)
		}
		data, h := volumetest.Block(600, 3<<20+1)
		if err := vol.Put(context.Background(), h, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		sidecar := filepath.Join(root, h.String()[:3], h.String()+".crc32c")
		if err := os.Remove(sidecar); err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, []node.Mount{{UUID: "zzzzz-nyw5e-ccccccccccccccc", Volume: vol, VerifyFirst: true, ReadOnly: ro}},
			func(o *envOptions) { o.RequireSignatures = false })
		r := e.do("GET", "/"+h.String()+"+"+itoa(len(data)), nil, "Range: bytes=2097152-2097161")
		if r.Code != 206 || r.Body != string(data[2<<20:2<<20+10]) {
			t.Fatalf("read-only=%v: range: %d %q", ro, r.Code, r.Body)
		}
		_, statErr := os.Stat(sidecar)
		vouched := r.Header.Get(keepwire.DataVerified) == keepwire.VerifiedChunks
		if !ro && (statErr != nil || !vouched) {
			t.Fatalf("range read of an old block: checksums stored %v, vouched %v", statErr == nil, vouched)
		}
		if ro && (statErr == nil || vouched) {
			t.Fatalf("read-only mount: checksums stored %v, vouched %v", statErr == nil, vouched)
		}
		vol.Close()
	}
}
