package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// Defects found from outside, through keepproxy with real keepstores:
// ranges at or past the end of a block, ranges of the empty block, and
// X-Keep-Desired-Replicas: 0.
func TestProxyRangeAndReplicaDefects(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	data, h := volumetest.Block(31, 10000)
	resp, loc := put(t, c, data, 2)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %q", resp.StatusCode, loc)
	}
	empty := blockstore.EmptyHash.String() + "+0"
	cases := []struct {
		name, path, rng string
		status          int
		contentRange    string
		body            []byte
	}{
		{"range starting at the end", "/" + loc, "bytes=10000-10100", 416, "bytes */10000", nil},
		{"range starting past the end", "/" + loc, "bytes=20000-", 416, "bytes */10000", nil},
		{"last byte", "/" + loc, "bytes=9999-", 206, "bytes 9999-9999/10000", data[9999:]},
		{"range running past the end", "/" + loc, "bytes=9990-20000", 206, "bytes 9990-9999/10000", data[9990:]},
		{"empty block, bytes=0-", "/" + empty, "bytes=0-", 200, "", []byte{}},
		{"empty block, bytes=0-0", "/" + empty, "bytes=0-0", 416, "bytes */0", nil},
		{"empty block, bytes=5-", "/" + empty, "bytes=5-", 416, "bytes */0", nil},
	}
	for _, tc := range cases {
		resp, text := request(t, "GET", c.ProxyURL+tc.path, testenv.TokenRW, nil, 0, map[string]string{"Range": tc.rng})
		if resp.StatusCode != tc.status || resp.Header.Get("Content-Range") != tc.contentRange {
			t.Errorf("%s: %d Content-Range %q %q; want %d %q", tc.name, resp.StatusCode, resp.Header.Get("Content-Range"), text, tc.status, tc.contentRange)
			continue
		}
		if tc.body != nil && text != string(tc.body) {
			t.Errorf("%s: body of %d bytes, want %d", tc.name, len(text), len(tc.body))
		}
	}
	// A 416 is answered at once, not after retry passes over the stores.
	if n := metric(t, c, "keepproxy_upstream_failures_total"); n != 0 {
		t.Errorf("range refusals were counted as %v store failures", n)
	}

	// X-Keep-Desired-Replicas: 0 means the default (2): the body is read,
	// verified and stored; a wrong body is refused.
	d2, h2 := volumetest.Block(32, 5000)
	resp, loc2 := request(t, "PUT", c.ProxyURL+"/"+h2.String(), testenv.TokenRW, bytes.NewReader(d2), int64(len(d2)), map[string]string{"X-Keep-Desired-Replicas": "0"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" || !strings.Contains(loc2, "+A") {
		t.Fatalf("replicas 0: %d stored=%q %q", resp.StatusCode, resp.Header.Get("X-Keep-Replicas-Stored"), loc2)
	}
	for i, s := range c.Stores {
		if !s.Has(h2.String()) {
			t.Errorf("replicas 0: store %d does not hold the block", i)
		}
	}
	bad := bytes.Clone(d2)
	bad[0] ^= 1
	d3, h3 := volumetest.Block(33, 5000)
	_ = d3
	resp, text := request(t, "PUT", c.ProxyURL+"/"+h3.String(), testenv.TokenRW, bytes.NewReader(bad), int64(len(bad)), map[string]string{"X-Keep-Desired-Replicas": "0"})
	if resp.StatusCode != 400 {
		t.Errorf("replicas 0 with a wrong body: %d %q, want 400", resp.StatusCode, text)
	}
	_ = h
}

// metric reads one counter (summed over its labels) from keepproxy's /metrics.
func metric(t *testing.T, c *testenv.Cluster, name string) float64 {
	t.Helper()
	resp, err := http.Get(c.ProxyURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(buf.String(), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			fields := strings.Fields(line)
			fmt.Sscan(fields[len(fields)-1], &v)
			sum += v
		}
	}
	return sum
}

// A copy of the wrong size (truncated, extended) or a symlink in place of
// the block file is a damaged copy: with no good copy left, keepproxy
// answers 502 with the checksum message (never 404), counts a corrupt
// read, and each keepstore logs the damaged copy with its volume.
func TestProxyWrongSizeCopiesAreDamaged(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	damage := map[string]func(path string, data []byte) error{
		"truncated": func(p string, d []byte) error { return os.WriteFile(p, d[:len(d)-1], 0o600) },
		"extended":  func(p string, d []byte) error { return os.WriteFile(p, append(bytes.Clone(d), 'x'), 0o600) },
		"symlink": func(p string, d []byte) error {
			elsewhere := p + ".elsewhere"
			if err := os.WriteFile(elsewhere, d, 0o600); err != nil {
				return err
			}
			os.Remove(p)
			return os.Symlink(filepath.Base(elsewhere), p)
		},
	}
	seed := uint64(40)
	for name, f := range damage {
		seed++
		data, h := volumetest.Block(seed, 20000)
		resp, loc := put(t, c, data, 2)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: PUT %d", name, resp.StatusCode)
		}
		for _, s := range c.Stores {
			if err := f(s.BlockPath(h.String()), data); err != nil {
				t.Fatal(err)
			}
		}
		before := metric(t, c, "keepproxy_corrupt_reads_total")
		for _, method := range []string{"GET", "HEAD"} {
			resp, text := request(t, method, c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
			if resp.StatusCode != 502 || (method == "GET" && !strings.Contains(text, "checksum mismatch")) {
				t.Errorf("%s copies, %s: %d %q; want 502 with the checksum message", name, method, resp.StatusCode, text)
			}
		}
		if after := metric(t, c, "keepproxy_corrupt_reads_total"); after <= before {
			t.Errorf("%s copies: keepproxy_corrupt_reads_total did not move (%v)", name, after)
		}
		for i, s := range c.Stores {
			if !s.Proc.Contains("damaged copy") || !s.Proc.Contains(`"mount"`) {
				t.Errorf("%s copies: keepstore %d did not log the damaged copy with its mount", name, i)
			}
		}
	}
}
