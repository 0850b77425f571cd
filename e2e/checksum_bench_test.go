package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/dirvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/node/nodehttp"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/gateway"
	gatewayapi "github.com/keepgate/keepgate/gateway/api"
	"github.com/keepgate/keepgate/placement"
)

// BenchmarkChecksumDataPath runs keepproxy's gateway and three keepstore
// nodes on directory volumes in this process, over loopback TCP, so that
// one CPU profile shows where a replicated PUT and a GET spend their CPU
// (BENCHMARKS.md, "Where the CPU goes"):
//
//	go test -run '^$' -bench ChecksumDataPath -benchtime 40x -cpuprofile /tmp/cpu.out ./e2e/
//	go tool pprof -top /tmp/cpu.out
func BenchmarkChecksumDataPath(b *testing.B) {
	const writeToken = "bench-write-token-0123456789"
	const userToken = "bench-user-token-0123456789"
	key := []byte("benchsigningkey0123456789abcdefghijklmnopqrstuvwxyz")
	var svcs []placement.Service
	var stores []string
	for i := 0; i < 3; i++ {
		vol, err := dirvolume.New(dirvolume.Config{Root: b.TempDir(), Reserve: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { vol.Close() })
		n, err := node.New(node.Options{Mounts: []node.Mount{{UUID: fmt.Sprintf("zzzzz-nyw5e-%015d", i), Volume: vol, VerifyFirst: true}},
			Signer: &blockstore.Signer{Key: key, TTL: time.Hour}})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewServer(nodehttp.New(n, nodehttp.Options{WriteToken: writeToken}))
		b.Cleanup(srv.Close)
		svcs = append(svcs, placement.Service{UUID: fmt.Sprintf("zzzzz-bi6l4-%015d", i), URL: srv.URL})
		stores = append(stores, srv.URL)
	}
	g, err := gatewayapi.New(gatewayapi.Options{Options: gateway.Options{Services: svcs, StoreWriteToken: writeToken, BlobSigningKey: key}, Auth: benchAuth{userToken}})
	if err != nil {
		b.Fatal(err)
	}
	proxy := httptest.NewServer(g.Handler())
	b.Cleanup(proxy.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16, DisableCompression: true, WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10}}
	data, h := volumetest.Block(4242, blockstore.MaxBlockSize)
	do := func(method, url, tok string, body []byte, hdr ...string) (int, string) {
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, _ := http.NewRequest(method, url, rd)
		req.Header.Set("Authorization", "Bearer "+tok)
		for _, kv := range hdr {
			k, v, _ := strings.Cut(kv, ": ")
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		if method == "GET" && resp.StatusCode != 200 {
			text, _ := io.ReadAll(resp.Body)
			b.Logf("GET %s: %d %s", url, resp.StatusCode, text)
		}
		if method == "GET" {
			io.Copy(io.Discard, resp.Body) // no client-side hash: the profile is the servers'
			return resp.StatusCode, ""
		}
		text, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(text))
	}
	var loc string
	b.Run("PUT-replicas=2", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			var code int
			if code, loc = do("PUT", proxy.URL+"/"+h.String(), userToken, data, "X-Keep-Desired-Replicas: 2"); code != 200 {
				b.Fatalf("PUT: %d %s", code, loc)
			}
		}
	})
	b.Run("GET-proxy", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			if code, _ := do("GET", proxy.URL+"/"+loc, userToken, nil); code != 200 {
				b.Fatalf("GET %s: %d", loc, code)
			}
		}
	})
	b.Run("GET-store", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		for b.Loop() {
			for _, s := range stores {
				if code, _ := do("GET", s+"/"+loc, userToken, nil); code == 200 {
					break
				}
			}
		}
	})
}

type benchAuth struct{ token string }

func (a benchAuth) Authenticate(_ context.Context, tok string) (*access.Identity, error) {
	if tok != a.token {
		return nil, access.ErrBadToken
	}
	return &access.Identity{Name: "bench", Scopes: []access.Scope{access.ScopeRead, access.ScopeWrite}}, nil
}
