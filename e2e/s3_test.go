package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// TestProxyWithS3Store runs keepproxy over two keepstores, one on a
// directory volume and one on an S3 volume in a real MinIO, with MinIO
// stopped and restarted mid-test.
func TestProxyWithS3Store(t *testing.T) {
	m := testenv.StartMinIO(t)
	m.MakeBucket("keep-e2e")
	access, secret := m.CredentialFiles(t.TempDir())
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2,
		StoreExtra: "trash_lifetime: 0s\n",
		StoreYAML: func(i int, root string) string {
			if i == 0 {
				return fmt.Sprintf("volumes:\n  - driver: Directory\n    directory:\n      root: %s\n      reserve: -1\n", root)
			}
			return fmt.Sprintf("volumes:\n  - driver: S3\n    s3:\n      endpoint: %s\n      bucket: keep-e2e\n      prefix: keep/\n      path_style: true\n      access_key_file: %s\n      secret_key_file: %s\n      retries: 1\n", m.Addr, access, secret)
		}})
	s3store := c.Stores[1]
	inBucket := func(hash string) bool {
		_, err := m.Client().StatObject(context.Background(), "keep-e2e", "keep/"+hash, minio.StatObjectOptions{})
		return err == nil
	}

	// 64 MiB blocks at replicas 2: one copy on disk, one in the bucket.
	data, h := volumetest.Block(61, blockstore.MaxBlockSize)
	resp, loc := put(t, c, data, 2)
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("PUT: %d %q", resp.StatusCode, loc)
	}
	if !c.Stores[0].Has(h.String()) || !inBucket(h.String()) {
		t.Fatalf("placement: disk=%v bucket=%v", c.Stores[0].Has(h.String()), inBucket(h.String()))
	}
	// The S3 store serves it on its own.
	resp, got := request(t, "GET", s3store.URL+"/"+loc, testenv.TokenRW, nil, 0, nil)
	if resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET from the S3 keepstore: %d", resp.StatusCode)
	}

	// MinIO down: reads fail over to the directory store; writes report the shortfall.
	m.Stop()
	for i := 0; i < 2; i++ {
		resp, got = request(t, "GET", c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
		if resp.StatusCode != 200 || got != string(data) {
			t.Fatalf("GET with MinIO down: %d", resp.StatusCode)
		}
	}
	data2, h2 := volumetest.Block(62, 1<<20)
	resp, body := put(t, c, data2, 2)
	if resp.StatusCode != 503 || resp.Header.Get("X-Keep-Replicas-Stored") != "1" {
		t.Fatalf("PUT with MinIO down: %d %q replicas=%q", resp.StatusCode, body, resp.Header.Get("X-Keep-Replicas-Stored"))
	}
	if !strings.Contains(body, "wanted 2, stored 1") {
		t.Errorf("shortfall message %q", body)
	}

	// MinIO back: the S3 store serves again.
	m.Start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, body = put(t, c, data2, 2)
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PUT after MinIO restart: %d %q", resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !inBucket(h2.String()) {
		t.Fatal("block written after the restart is not in the bucket")
	}
	resp, got = request(t, "GET", s3store.URL+"/"+loc, testenv.TokenRW, nil, 0, nil)
	if resp.StatusCode != 200 || !bytes.Equal([]byte(got), data) {
		t.Fatalf("S3 keepstore GET after restart: %d", resp.StatusCode)
	}
	// The 64 MiB block written before the outage survived it.
	resp, _ = request(t, "HEAD", s3store.URL+"/"+loc, testenv.TokenRW, nil, 0, nil)
	if resp.StatusCode != http.StatusOK || resp.ContentLength != blockstore.MaxBlockSize {
		t.Fatalf("HEAD on the S3 keepstore: %d %d", resp.StatusCode, resp.ContentLength)
	}
}
