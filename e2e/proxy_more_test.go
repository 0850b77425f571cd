package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// A slow but steady upload is never cut off; a stalled one is (408), and
// leaves nothing behind.
func TestProxySlowAndStalledClients(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2, ProxyExtra: "body_idle_timeout: 1s\n"})
	data, h := volumetest.Block(71, 2<<20)
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(data); off += 64 << 10 {
			pw.Write(data[off : off+64<<10])
			time.Sleep(40 * time.Millisecond) // 32 pieces: ~1.3 s in all, more than the idle timeout
		}
		pw.Close()
	}()
	t0 := time.Now()
	resp, loc := request(t, "PUT", c.ProxyURL+"/"+h.String(), testenv.TokenRW, pr, int64(len(data)), map[string]string{"X-Keep-Desired-Replicas": "2"})
	if resp.StatusCode != 200 || time.Since(t0) < time.Second {
		t.Fatalf("slow steady upload: %d %q after %s", resp.StatusCode, loc, time.Since(t0))
	}

	data2, h2 := volumetest.Block(72, 2<<20)
	pr2, pw2 := io.Pipe()
	go func() {
		pw2.Write(data2[:1<<20])
		time.Sleep(2500 * time.Millisecond)
		pw2.CloseWithError(fmt.Errorf("gave up"))
	}()
	t1 := time.Now()
	resp, body := request(t, "PUT", c.ProxyURL+"/"+h2.String(), testenv.TokenRW, pr2, int64(len(data2)), map[string]string{"X-Keep-Desired-Replicas": "2"})
	t.Logf("stalled request answered after %s; slow one took %s", time.Since(t1), t1.Sub(t0))
	if resp.StatusCode != 408 {
		t.Fatalf("stalled upload: %d %q, want 408", resp.StatusCode, body)
	}
	time.Sleep(200 * time.Millisecond)
	for _, s := range c.Stores {
		if s.Has(h2.String()) {
			t.Fatal("a stalled upload left a block behind")
		}
	}
}

// With no config file, ARVADOS_API_HOST/TOKEN/INSECURE make keepproxy
// validate tokens against that API server and discover its keepstores.
func TestProxyArvadosEnvironment(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2, NoProxy: true})
	const userToken = "v2/zzzzz-gj3su-000000000000001/arvadosusersecret"
	const sysToken = "v2/zzzzz-gj3su-000000000000000/arvadossystemtoken"
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		switch r.URL.Path {
		case "/arvados/v1/users/current":
			if tok == userToken {
				w.Write([]byte(`{"uuid":"zzzzz-tpzed-000000000000001","is_admin":false}`))
				return
			}
			http.Error(w, `{"errors":["Not logged in"]}`, 401)
		case "/arvados/v1/keep_services/accessible":
			if tok != sysToken && tok != userToken {
				http.Error(w, "unauthorized", 401)
				return
			}
			var items []map[string]any
			for _, s := range c.Stores {
				host, port, _ := net.SplitHostPort(s.Addr)
				p, _ := strconv.Atoi(port)
				items = append(items, map[string]any{"uuid": s.UUID, "service_host": host, "service_port": p, "service_ssl_flag": false, "service_type": "disk", "read_only": false})
			}
			items = append(items, map[string]any{"uuid": "zzzzz-bi6l4-proxyproxyproxy", "service_host": "127.0.0.1", "service_port": 1, "service_type": "proxy"})
			json.NewEncoder(w).Encode(map[string]any{"items": items})
		default:
			http.Error(w, "not found", 404)
		}
	}))
	defer api.Close()
	addr := testenv.FreeAddr(t)
	p := testenv.Start(t, testenv.Build(t, "keepproxy"), nil,
		"ARVADOS_API_HOST="+strings.TrimPrefix(api.URL, "https://"), "ARVADOS_API_TOKEN="+sysToken, "ARVADOS_API_HOST_INSECURE=1",
		"KEEPPROXY_LISTEN="+addr)
	testenv.WaitHTTP(t, "http://"+addr+"/_health/ping", 0, p)
	data, h := volumetest.Block(73, 1<<20)
	resp, loc := request(t, "PUT", "http://"+addr+"/"+h.String(), userToken, bytes.NewReader(data), int64(len(data)), nil)
	if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("PUT with Arvados env: %d %q replicas %q\n%s", resp.StatusCode, loc, resp.Header.Get("X-Keep-Replicas-Stored"), p.Output())
	}
	resp, got := request(t, "GET", "http://"+addr+"/"+loc, userToken, nil, 0, nil)
	if resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET with Arvados env: %d", resp.StatusCode)
	}
	resp, _ = request(t, "GET", "http://"+addr+"/"+loc, "v2/zzzzz-gj3su-000000000000009/wrong", nil, 0, nil)
	if resp.StatusCode != 403 {
		t.Fatalf("token the API rejects: %d", resp.StatusCode)
	}
}
