package e2e

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

func request(t *testing.T, method, url, token string, body io.Reader, size int64, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.ContentLength = size
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return resp, string(b)
}

func put(t *testing.T, c *testenv.Cluster, data []byte, replicas int) (*http.Response, string) {
	h := fmt.Sprintf("%x", md5.Sum(data))
	return request(t, "PUT", c.ProxyURL+"/"+h, testenv.TokenRW, bytes.NewReader(data), int64(len(data)), map[string]string{"X-Keep-Desired-Replicas": fmt.Sprint(replicas)})
}

// probeOrder returns the cluster's stores in the block's rendezvous order.
func probeOrder(c *testenv.Cluster, hash string) []*testenv.Store {
	h, _ := blockstore.ParseHash(hash)
	var uuids []string
	for _, s := range c.Stores {
		uuids = append(uuids, s.UUID)
	}
	var out []*testenv.Store
	for _, i := range blockstore.ServiceOrder(h, uuids) {
		out = append(out, c.Stores[i])
	}
	return out
}

var signedRe = regexp.MustCompile(`^[0-9a-f]{32}\+\d+\+A[0-9a-f]{40}@[0-9a-f]{8}$`)

func TestProxyReplicasAndPlacement(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	for r := 1; r <= 3; r++ {
		data, h := volumetest.Block(uint64(100+r), 5<<20+r)
		resp, loc := put(t, c, data, r)
		if resp.StatusCode != 200 || !signedRe.MatchString(loc) {
			t.Fatalf("replicas=%d: PUT %d %q", r, resp.StatusCode, loc)
		}
		if got := resp.Header.Get("X-Keep-Replicas-Stored"); got != fmt.Sprint(r) {
			t.Fatalf("replicas=%d: X-Keep-Replicas-Stored=%q", r, got)
		}
		for i, s := range probeOrder(c, h.String()) {
			if s.Has(h.String()) != (i < r) {
				t.Fatalf("replicas=%d: store at probe position %d has=%v", r, i, s.Has(h.String()))
			}
		}
		resp, got := request(t, "GET", c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
		if resp.StatusCode != 200 || got != string(data) {
			t.Fatalf("GET: %d, equal=%v", resp.StatusCode, got == string(data))
		}
		resp, _ = request(t, "HEAD", c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
		if resp.StatusCode != 200 || resp.ContentLength != int64(len(data)) {
			t.Fatalf("HEAD: %d %d", resp.StatusCode, resp.ContentLength)
		}
	}
}

func TestProxyStatuses(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	data, h := volumetest.Block(7, 4096)
	resp, loc := put(t, c, data, 2)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	other, oh := volumetest.Block(8, 4096)
	_ = other
	expired := h.String() + "+4096+A" + strings.Repeat("0", 40) + "@00000001"
	signer := &blockstore.Signer{Key: []byte(testenv.SigningKey), TTL: 336 * time.Hour}
	missing := signer.Sign(blockstore.Locator{Hash: oh, Size: 4096}, testenv.TokenRO).String()
	cases := []struct {
		name, method, path, token string
		body                      []byte
		hdr                       map[string]string
		status                    int
	}{
		{"PUT no token", "PUT", "/" + oh.String(), "", other, nil, 403},
		{"PUT bad token", "PUT", "/" + oh.String(), "not-a-valid-token", other, nil, 403},
		{"PUT read-only token", "PUT", "/" + oh.String(), testenv.TokenRO, other, nil, 403},
		{"PUT wrong hash", "PUT", "/" + oh.String(), testenv.TokenRW, bad, nil, 400},
		{"PUT size hint mismatch", "PUT", "/" + oh.String() + "+5", testenv.TokenRW, other, nil, 400},
		{"PUT malformed locator", "PUT", "/" + oh.String()[:31] + "g", testenv.TokenRW, other, nil, 400},
		{"GET missing", "GET", "/" + missing, testenv.TokenRO, nil, nil, 404},
		{"GET no token", "GET", "/" + loc, "", nil, nil, 403},
		{"GET bad signature", "GET", "/" + h.String() + "+4096+A" + strings.Repeat("1", 40) + "@7fffffff", testenv.TokenRO, nil, nil, 422},
		{"GET expired signature", "GET", "/" + expired, testenv.TokenRO, nil, nil, 422},
		{"GET signed for another token", "GET", "/" + loc, testenv.TokenRO, nil, nil, 422},
		{"GET loop", "GET", "/" + loc, testenv.TokenRW, nil, map[string]string{"Via": "1.1 keepproxy"}, 500},
		{"index without admin", "GET", "/index", testenv.TokenRW, nil, nil, 403},
		{"unknown route", "DELETE", "/" + loc, testenv.TokenRW, nil, nil, 400},
		{"GET ok", "GET", "/" + loc, testenv.TokenRW, nil, nil, 200},
		{"index admin", "GET", "/index", testenv.TokenAdmin, nil, nil, 200},
	}
	for _, tc := range cases {
		var body io.Reader
		if tc.body != nil {
			body = bytes.NewReader(tc.body)
		}
		resp, text := request(t, tc.method, c.ProxyURL+tc.path, tc.token, body, int64(len(tc.body)), tc.hdr)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %d %q, want %d", tc.name, resp.StatusCode, text, tc.status)
		}
	}
	for _, s := range c.Stores {
		if s.Has(oh.String()) {
			t.Fatal("a refused PUT left the block on a store")
		}
	}
	// Oversized: Content-Length over 64 MiB → 413 before the body is read.
	resp, _ = request(t, "PUT", c.ProxyURL+"/"+oh.String(), testenv.TokenRW, io.LimitReader(zeroReader{}, blockstore.MaxBlockSize+1), blockstore.MaxBlockSize+1, nil)
	if resp.StatusCode != 413 {
		t.Errorf("oversized PUT: %d", resp.StatusCode)
	}
	// No Content-Length (chunked) → 411.
	resp, _ = request(t, "PUT", c.ProxyURL+"/"+oh.String(), testenv.TokenRW, io.NopCloser(bytes.NewReader(other)), -1, nil)
	if resp.StatusCode != 411 {
		t.Errorf("chunked PUT: %d", resp.StatusCode)
	}
	// More replicas than stores → 503 with the partial count.
	resp, _ = put(t, c, other, 3)
	if resp.StatusCode != 503 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Errorf("shortfall: %d %q", resp.StatusCode, resp.Header.Get("X-Keep-Replicas-Stored"))
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestProxyStoreKilledBeforeAndDuringPut(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 4})
	data, h := volumetest.Block(21, blockstore.MaxBlockSize)
	order := probeOrder(c, h.String())
	// Before: the first store in probe order is down.
	order[0].Kill()
	resp, loc := put(t, c, data, 2)
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" || !order[1].Has(h.String()) || !order[2].Has(h.String()) {
		t.Fatalf("PUT with first store down: %d %q replicas=%s", resp.StatusCode, loc, resp.Header.Get("X-Keep-Replicas-Stored"))
	}
	order[0].Start()

	// During: the first store dies after ~24 MiB have been streamed.
	data2, h2 := volumetest.Block(22, blockstore.MaxBlockSize)
	order = probeOrder(c, h2.String())
	pr, pw := io.Pipe()
	go func() {
		pw.Write(data2[:24<<20])
		time.Sleep(300 * time.Millisecond)
		order[0].Kill()
		time.Sleep(100 * time.Millisecond)
		pw.Write(data2[24<<20:])
		pw.Close()
	}()
	resp, loc = request(t, "PUT", c.ProxyURL+"/"+h2.String(), testenv.TokenRW, pr, int64(len(data2)), map[string]string{"X-Keep-Desired-Replicas": "2"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("PUT with a store killed mid-body: %d %q", resp.StatusCode, loc)
	}
	n := 0
	for _, s := range order[1:] {
		if s.Has(h2.String()) {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d surviving stores hold the block, want 2", n)
	}
	resp, got := request(t, "GET", c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
	if resp.StatusCode != 200 || got != string(data2) {
		t.Fatalf("GET after: %d", resp.StatusCode)
	}
}

func TestProxyStoreKilledDuringGet(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	data, h := volumetest.Block(31, blockstore.MaxBlockSize)
	resp, loc := put(t, c, data, 3)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	order := probeOrder(c, h.String())
	req, _ := http.NewRequest("GET", c.ProxyURL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	gr, err := http.DefaultClient.Do(req)
	if err != nil || gr.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, gr)
	}
	var got bytes.Buffer
	if _, err := io.CopyN(&got, gr.Body, 4<<20); err != nil {
		t.Fatal(err)
	}
	order[0].Kill()
	if _, err := io.Copy(&got, gr.Body); err != nil {
		t.Fatalf("GET body after the store died: %v", err)
	}
	gr.Body.Close()
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("GET returned %d bytes, equal=%v", got.Len(), bytes.Equal(got.Bytes(), data))
	}
}

func TestProxyCorruptCopy(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	data, h := volumetest.Block(41, 3<<20)
	resp, loc := put(t, c, data, 2)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	first := probeOrder(c, h.String())[0]
	bad := bytes.Clone(data)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(first.BlockPath(h.String()), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		resp, got := request(t, "GET", c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
		if resp.StatusCode != 200 || got != string(data) {
			t.Fatalf("GET with a corrupt first copy: %d equal=%v", resp.StatusCode, got == string(data))
		}
	}
	if !first.Proc.Contains("corrupt") && !first.Proc.Contains("checksum") {
		t.Errorf("the corrupt copy was not logged by its keepstore:\n%s", first.Proc.Output())
	}
}

func TestProxyTokenFileReloadOnSIGHUP(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1})
	newTok := "freshly-added-token-0123456789"
	if err := os.WriteFile(c.TokenFile, []byte("tokens:\n  - name: fresh\n    token: "+newTok+"\n    scopes: [read, write]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Proxy.Signal(sighup)
	data := []byte("hello keep\n")
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := request(t, "PUT", c.ProxyURL+"/6f09f2b353b6d63069f770b90e2b112c", newTok, bytes.NewReader(data), 11, map[string]string{"X-Keep-Desired-Replicas": "1"})
		if resp.StatusCode == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("new token not accepted after SIGHUP: %d", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, _ := request(t, "PUT", c.ProxyURL+"/6f09f2b353b6d63069f770b90e2b112c", testenv.TokenRW, bytes.NewReader(data), 11, nil)
	if resp.StatusCode != 403 {
		t.Fatalf("removed token still accepted: %d", resp.StatusCode)
	}
}

func TestProxyRemoteTokenValidation(t *testing.T) {
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/arvados/v1/users/current" && r.Header.Get("Authorization") == "Bearer v2/zzzzz-gj3su-000000000000000/remotesecret" {
			w.Write([]byte(`{"uuid":"zzzzz-tpzed-000000000000000","is_admin":false}`))
			return
		}
		http.Error(w, `{"errors":["Not logged in"]}`, 401)
	}))
	defer api.Close()
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, ProxyExtra: fmt.Sprintf("api:\n  host: %s\n  insecure: true\n", api.URL)})
	data := []byte("hello keep\n")
	resp, loc := request(t, "PUT", c.ProxyURL+"/6f09f2b353b6d63069f770b90e2b112c", "v2/zzzzz-gj3su-000000000000000/remotesecret", bytes.NewReader(data), 11, map[string]string{"X-Keep-Desired-Replicas": "1"})
	if resp.StatusCode != 200 {
		t.Fatalf("API-validated token: %d %q", resp.StatusCode, loc)
	}
	resp, _ = request(t, "GET", c.ProxyURL+"/"+loc, "v2/zzzzz-gj3su-000000000000000/wrong", nil, 0, nil)
	if resp.StatusCode != 403 {
		t.Fatalf("API-rejected token: %d", resp.StatusCode)
	}
}

func TestProxyCORS(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1})
	resp, body := request(t, "OPTIONS", c.ProxyURL+"/6f09f2b353b6d63069f770b90e2b112c", "", nil, 0, map[string]string{"Origin": "https://uploader.example", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization,content-type,x-keep-desired-replicas"})
	if resp.StatusCode != 200 || body != "" {
		t.Fatalf("preflight: %d %q", resp.StatusCode, body)
	}
	for k, v := range map[string]string{
		"Access-Control-Allow-Origin":   "*",
		"Access-Control-Allow-Methods":  "GET, HEAD, PUT, OPTIONS, POST",
		"Access-Control-Allow-Headers":  "Authorization, Content-Length, Content-Type, X-Keep-Desired-Replicas, X-Keep-Signature, X-Keep-Storage-Classes",
		"Access-Control-Expose-Headers": "X-Keep-Locator, X-Keep-Replicas-Stored, X-Keep-Storage-Classes-Confirmed",
		"Access-Control-Max-Age":        "86486400",
	} {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	resp, _ = request(t, "PUT", c.ProxyURL+"/6f09f2b353b6d63069f770b90e2b112c", testenv.TokenRW, strings.NewReader("hello keep\n"), 11, map[string]string{"Origin": "https://uploader.example", "X-Keep-Desired-Replicas": "1"})
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Keep-Replicas-Stored") {
		t.Fatalf("PUT from another origin: %d %v", resp.StatusCode, resp.Header)
	}
}
