package main

import (
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

// TestKillBetweenDataAndChecksums SIGKILLs keepstore as soon as the data
// of a 64 MiB PUT is all in its temp file — while it syncs it, writes the
// checksum file and renames the two into place — and restarts it on the
// same directory. Whatever instant the kill hit, the block is either
// absent (404, not in the index, nothing left on disk: no temp file, no
// orphan checksum file) or complete with its checksums (a chunk-checked
// 200 whose MD5 matches). A few rounds, to land at different instants.
func TestKillBetweenDataAndChecksums(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "vol")
	os.Mkdir(root, 0o755)
	k := startKS(t, secretsYAML(t, dir)+"require_signatures: false\nvolumes:\n"+dirVolume(root, ""))
	for round := 0; round < 3; round++ {
		data, h := volumetest.Block(uint64(900+round), blockstore.MaxBlockSize)
		sub := filepath.Join(root, h.String()[:3])
		pr, pw := io.Pipe()
		req, _ := http.NewRequest("PUT", k.url+"/"+h.String(), pr)
		req.ContentLength = int64(len(data))
		go func() {
			if res, err := client.Do(req); err == nil {
				res.Body.Close()
			}
		}()
		go func() { pw.Write(data); pw.Close() }()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Microsecond) {
			full := false
			entries, _ := os.ReadDir(sub)
			for _, e := range entries {
				if fi, err := e.Info(); err == nil && (fi.Size() == int64(len(data)) || strings.HasSuffix(e.Name(), ".crc32c")) {
					full = true
				}
			}
			if full {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the block's data never reached the disk", round)
			}
		}
		k.proc.Kill()
		pw.CloseWithError(fmt.Errorf("killed"))
		k.start()

		loc := fmt.Sprintf("/%s+%d", h, len(data))
		res, err := client.Get(k.url + loc)
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.New()
		n, rerr := io.Copy(sum, res.Body)
		res.Body.Close()
		entries, _ := os.ReadDir(sub)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		switch res.StatusCode {
		case 404:
			if len(names) != 0 {
				t.Fatalf("round %d: block absent but left on disk: %v", round, names)
			}
			if r := k.do("GET", "/index", nil, auth(e2eAdmin)); strings.Contains(r.body, h.String()) {
				t.Fatalf("round %d: index lists an absent block", round)
			}
			t.Logf("round %d: killed before the commit; nothing left", round)
		case 200:
			if rerr != nil || n != int64(len(data)) || blockstore.Hash(sum.Sum(nil)) != h {
				t.Fatalf("round %d: GET after the crash: %d bytes, %v", round, n, rerr)
			}
			if res.Header.Get(keepwire.DataVerified) != keepwire.VerifiedChunks {
				t.Fatalf("round %d: block committed without usable checksums", round)
			}
			if len(names) != 2 {
				t.Fatalf("round %d: want the block and its checksum file, got %v", round, names)
			}
			t.Logf("round %d: killed after the commit; block and checksums intact", round)
		default:
			t.Fatalf("round %d: GET after the crash: %d", round, res.StatusCode)
		}
	}
}
