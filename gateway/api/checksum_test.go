package gatewayapi

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/node/nodehttp"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/placement"
)

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// damagingTransport flips one byte of the PUT bodies it sends to host
// (memory or transport damage after the gateway hashed the body).
type damagingTransport struct {
	http.RoundTripper
	host string
	at   int64
}

func (d damagingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodPut && req.URL.Host == d.host && req.Body != nil {
		// In place: the gateway fills req.Trailer after the body.
		req.Body = &flipBody{ReadCloser: req.Body, at: d.at}
	}
	return d.RoundTripper.RoundTrip(req)
}

type flipBody struct {
	io.ReadCloser
	at, off int64
}

func (f *flipBody) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at >= f.off && f.at < f.off+int64(n) {
		p[f.at-f.off] ^= 0x01
	}
	f.off += int64(n)
	return n, err
}

// TestPutChecksumRefusedByOneStore runs the gateway in front of three real
// keepstore nodes (their HTTP API with the write token), the body to one
// of them damaged on the way: that store refuses it (its chunk checksum
// does not match the gateway's) and stores nothing; the gateway logs which
// store refused, counts its failure, and makes up the replica on the next
// store. The other stores checked checksums, not MD5.
func TestPutChecksumRefusedByOneStore(t *testing.T) {
	const writeToken = "store-write-token-0123456789"
	key := []byte("examplesigningkey0123456789abcdefghijklmnopqrstuvwxyz")
	var svcs []placement.Service
	vols := map[string]*memvolume.Volume{}
	nodes := map[string]*node.Node{}
	for i := 0; i < 3; i++ {
		uuid := fmt.Sprintf("zzzzz-bi6l4-%015d", i)
		vol := memvolume.New(blockstore.TrashPolicy{})
		n, err := node.New(node.Options{Mounts: []node.Mount{{UUID: fmt.Sprintf("zzzzz-nyw5e-%015d", i), Volume: vol}},
			Signer: &blockstore.Signer{Key: key, TTL: time.Hour}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(nodehttp.New(n, nodehttp.Options{WriteToken: writeToken}))
		t.Cleanup(srv.Close)
		svcs = append(svcs, placement.Service{UUID: uuid, URL: srv.URL})
		vols[uuid], nodes[uuid] = vol, n
	}
	data, h := volumetest.Block(77, 3<<20+99)
	probe := blockstore.ServiceOrder(h, []string{svcs[0].UUID, svcs[1].UUID, svcs[2].UUID})
	victim, spare := svcs[probe[1]], svcs[probe[2]]
	logs := &lockedBuffer{}
	c := newCluster(t, 0, func(o *Options) {
		o.Services = svcs
		o.StoreWriteToken = writeToken
		o.BlobSigningKey = key
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.Transport = damagingTransport{RoundTripper: http.DefaultTransport, host: strings.TrimPrefix(victim.URL, "http://"), at: 1<<20 + 12345}
	})
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	body := readAll(t, resp)
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("PUT: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if _, err := vols[victim.UUID].Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("the store that got a damaged body stored it: %v", err)
	}
	for _, svc := range []placement.Service{svcs[probe[0]], spare} {
		rc, info, err := vols[svc.UUID].Get(t.Context(), h, 0, -1)
		if err != nil {
			t.Fatalf("store %s: %v", svc.UUID, err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) || info.Checksums == nil {
			t.Fatalf("store %s: wrong copy or no checksums", svc.UUID)
		}
	}
	l := logs.String()
	if !strings.Contains(l, "store write failed") || !strings.Contains(l, victim.UUID) || !strings.Contains(l, "does not match the checksum its sender computed") {
		t.Fatalf("the refusing store is not named in the log:\n%s", l)
	}
	if !strings.Contains(l, "replica made up") || !strings.Contains(l, spare.UUID) {
		t.Fatalf("no make-up copy to the next store in the log:\n%s", l)
	}
	resp = c.do("GET", "/metrics", "", nil, nil)
	m := readAll(t, resp)
	if !strings.Contains(m, `keepproxy_upstream_failures_total{method="PUT",store="`+victim.UUID+`"} 1`) {
		t.Errorf("no upstream failure counted for the refusing store:\n%s", grepLines(m, "upstream_failures"))
	}
	// The stores that took the block (the make-up copy included: the
	// gateway hashed it on the way) checked chunk checksums, not MD5.
	for _, svc := range []placement.Service{svcs[probe[0]], spare} {
		rec := httptest.NewRecorder()
		nodehttp.New(nodes[svc.UUID], nodehttp.Options{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		pv := grepLines(rec.Body.String(), "keepstore_put_verifications_total{")
		if pv != `keepstore_put_verifications_total{by="chunk_checksums"} 1` {
			t.Errorf("store %s: %q, want one PUT verified by chunk checksums and none by MD5", svc.UUID, pv)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestChecksumMixedVersions: keepproxy with the write token in front of
// stores that do not take its checksums (no write token configured, as a
// store that does not know the trailer would) — they MD5-verify the chunked
// body, and the block is stored; and a store that still sends the earlier
// "X-Keep-Data-Verified: md5" is no longer trusted: a copy that rots after
// that check is caught by keepproxy's own MD5 (the body is cut short,
// counted).
func TestChecksumMixedVersions(t *testing.T) {
	var svcs []placement.Service
	var nodes []*node.Node
	for i := 0; i < 2; i++ {
		vol := memvolume.New(blockstore.TrashPolicy{})
		n, err := node.New(node.Options{Mounts: []node.Mount{{UUID: fmt.Sprintf("zzzzz-nyw5e-%015d", i), Volume: vol}}})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(nodehttp.New(n, nodehttp.Options{})) // no write token: checksums not taken
		t.Cleanup(srv.Close)
		svcs = append(svcs, placement.Service{UUID: fmt.Sprintf("zzzzz-bi6l4-%015d", i), URL: srv.URL})
		nodes = append(nodes, n)
	}
	c := newCluster(t, 0, func(o *Options) {
		o.Services = svcs
		o.StoreWriteToken = "store-write-token-0123456789"
		o.BlobSigningKey = []byte("examplesigningkey0123456789abcdefghijklmnopqrstuvwxyz")
	})
	data, h := volumetest.Block(78, 2<<20+5)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	if body := readAll(t, resp); resp.StatusCode != 200 {
		t.Fatalf("PUT to stores that ignore the checksums: %d %q", resp.StatusCode, body)
	}
	for i, n := range nodes {
		rec := httptest.NewRecorder()
		nodehttp.New(n, nodehttp.Options{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if pv := grepLines(rec.Body.String(), "keepstore_put_verifications_total{"); pv != `keepstore_put_verifications_total{by="md5"} 1` {
			t.Errorf("store %d: %q, want the body MD5-verified", i, pv)
		}
	}

	// An earlier keepstore: "md5" after a check of another read, then
	// bytes that rotted in between.
	rotten := bytes.Clone(data)
	rotten[len(rotten)/2] ^= 0xff
	earlier := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(len(rotten)))
		w.Header().Set(keepwire.DataVerified, "md5")
		w.Write(rotten)
	}))
	t.Cleanup(earlier.Close)
	old := newCluster(t, 0, func(o *Options) {
		o.Services = []placement.Service{{UUID: "zzzzz-bi6l4-000000000000009", URL: earlier.URL}}
	})
	resp = old.do("GET", fmt.Sprintf("/%s+%d", h, len(data)), tokRW, nil, nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == 200 && err == nil && len(got) == len(data) {
		t.Fatal("a store's md5 promise was trusted: rotten bytes served as a clean 200")
	}
	m := readAll(t, old.do("GET", "/metrics", "", nil, nil))
	if !strings.Contains(m, "keepproxy_corrupt_reads_total 1") {
		t.Errorf("corrupt read not counted:\n%s", grepLines(m, "corrupt"))
	}
}
