package deploy

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

var insecureClient = testenv.InsecureClient

func doReq(t *testing.T, method, url, token string, body []byte, hdr map[string]string) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := insecureClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestNginxShippedConfigIsValid(t *testing.T) {
	testenv.NginxFront(t, "127.0.0.1:25107") // nginx -t runs inside
}

func TestNginxTLSFront(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	url, _ := testenv.NginxFront(t, c.ProxyAddr)

	data, h := volumetest.Block(1, blockstore.MaxBlockSize)
	t0 := time.Now()
	resp, loc, err := doReq(t, "PUT", url+"/"+h.String(), testenv.TokenRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("64 MiB PUT through nginx: %v %v %q", err, resp, loc)
	}
	putSecs := time.Since(t0).Seconds()
	t0 = time.Now()
	resp, got, err := doReq(t, "GET", url+"/"+string(loc), testenv.TokenRW, nil, nil)
	if err != nil || resp.StatusCode != 200 || md5.Sum(got) != [16]byte(h) {
		t.Fatalf("64 MiB GET through nginx: %v %v, %d bytes", err, resp, len(got))
	}
	t.Logf("through nginx TLS: PUT %.0f MiB/s, GET %.0f MiB/s (informational; see make bench)", 64/putSecs, 64/time.Since(t0).Seconds())

	over := append(bytes.Clone(data), 'x')
	oh := fmt.Sprintf("%x", md5.Sum(over))
	resp, _, err = doReq(t, "PUT", url+"/"+oh, testenv.TokenRW, over, nil)
	if err == nil && resp.StatusCode != 413 {
		t.Fatalf("64 MiB + 1 byte: %d, want 413", resp.StatusCode)
	}
	for _, s := range c.Stores {
		if s.Has(oh) {
			t.Fatal("an oversized block was stored")
		}
	}

	resp, body, err := doReq(t, "OPTIONS", url+"/"+h.String(), "", nil, map[string]string{"Origin": "https://uploader.example", "Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "authorization"})
	if err != nil || resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("preflight through nginx: %v %v %q", err, resp, body)
	}
	if resp.Header.Get("Access-Control-Allow-Methods") != "GET, HEAD, PUT, OPTIONS, POST" || len(resp.Header.Values("Access-Control-Allow-Origin")) != 1 {
		t.Fatalf("preflight headers through nginx: %v", resp.Header)
	}
	// keepproxy logged the real client address given by nginx.
	if !c.Proxy.Contains(`"client":"127.0.0.1"`) {
		t.Errorf("keepproxy did not log the client address")
	}
}

func TestNginxRoundRobinSurvivesAProxyDeath(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	// A second keepproxy with the same stores and tokens.
	second := testenv.FreeAddr(t)
	cfg2 := strings.Replace(mustRead(t, c.ProxyCfg), "listen: "+c.ProxyAddr, "listen: "+second, 1)
	cfg2Path := testenv.WriteFile(t, c.Dir, "keepproxy2.yml", cfg2)
	p2 := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", cfg2Path})
	testenv.WaitHTTP(t, "http://"+second+"/_health/ping", 0, p2)
	url, _ := testenv.NginxFront(t, c.ProxyAddr, second)

	var failures, retries, ok atomic.Int32
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				data, h := volumetest.Block(uint64(1000*w+i), 256<<10)
				// A client retries connection errors and 502/503 a few times, as Arvados clients do.
				success := false
				for attempt := 0; attempt < 4 && !success; attempt++ {
					if attempt > 0 {
						retries.Add(1)
						time.Sleep(100 * time.Millisecond)
					}
					resp, _, err := doReq(t, "PUT", url+"/"+h.String(), testenv.TokenRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
					success = err == nil && resp.StatusCode == 200
				}
				if success {
					ok.Add(1)
				} else {
					failures.Add(1)
				}
			}
		}(w)
	}
	time.Sleep(700 * time.Millisecond)
	c.Proxy.Kill()
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failures.Load() > 0 || ok.Load() < 10 {
		t.Fatalf("uploads: %d ok, %d failed after retries (%d retries)", ok.Load(), failures.Load(), retries.Load())
	}
	t.Logf("uploads: %d ok, 0 failed, %d client retries", ok.Load(), retries.Load())
}

func mustRead(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The shipped access log keeps a locator's expiry but never its signature
// (a read capability), and drops the query string.
func TestNginxAccessLogHasNoSignatures(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1})
	url, ngx := testenv.NginxFront(t, c.ProxyAddr)
	data, h := volumetest.Block(5, 1000)
	resp, loc, err := doReq(t, "PUT", url+"/"+h.String(), testenv.TokenRW, data, map[string]string{"X-Keep-Desired-Replicas": "1"})
	if err != nil || resp.StatusCode != 200 || !strings.Contains(string(loc), "+A") {
		t.Fatalf("PUT: %v %v %q", err, resp, loc)
	}
	sig := strings.SplitN(strings.SplitN(string(loc), "+A", 2)[1], "@", 2)[0]
	if resp, _, err = doReq(t, "GET", url+"/"+string(loc)+"?api_token=secret-in-query", testenv.TokenRW, nil, nil); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", err, resp)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(ngx.Output(), "GET /"+h.String()) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	out := ngx.Output()
	if !strings.Contains(out, "GET /"+h.String()+"+1000+A...@") {
		t.Fatalf("access log lacks the shortened locator:\n%s", out)
	}
	if strings.Contains(out, sig) || strings.Contains(out, "secret-in-query") {
		t.Fatalf("access log holds a signature or the query string:\n%s", out)
	}
}
