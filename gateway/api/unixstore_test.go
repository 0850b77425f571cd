package gatewayapi

import (
	"crypto/md5"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"github.com/keepgate/keepgate/placement"
)

// newUnixTestStore is a testStore served on a unix socket, listed as
// http+unix:///path.
func newUnixTestStore(t *testing.T, uuid, path string) (*testStore, net.Listener) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := newTestStoreOn(t, uuid, ln)
	f.svc = placement.Service{UUID: uuid, URL: "http+unix://" + path}
	return f, ln
}

// Stores on unix sockets take PUTs and GETs; when one's socket stops
// answering, reads fail over to the other and writes go elsewhere.
func TestUnixSocketStores(t *testing.T) {
	dir := t.TempDir()
	var unix []*testStore
	var lns []net.Listener
	c := newCluster(t, 1, func(o *Options) {
		for i := 0; i < 2; i++ {
			f, ln := newUnixTestStore(t, fmt.Sprintf("zzzzz-bi6l4-unix%011d", i), filepath.Join(dir, fmt.Sprintf("s%d.sock", i)))
			unix, lns = append(unix, f), append(lns, ln)
			o.Services = append(o.Services, f.svc)
		}
		o.DefaultReplicas = 3
	})
	body := []byte("through a unix socket\n")
	hash := fmt.Sprintf("%x", md5.Sum(body))
	resp := c.do("PUT", "/"+hash, tokRW, body, nil)
	loc := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, loc)
	}
	for i, f := range unix {
		if f.puts.Load() != 1 {
			t.Fatalf("unix store %d got %d PUTs", i, f.puts.Load())
		}
	}
	// Both unix stores down (listener closed, socket file left: refused).
	for _, ln := range lns {
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
	}
	for i := 0; i < 5; i++ {
		resp = c.do("GET", "/"+loc, tokRW, nil, nil)
		if got := readAll(t, resp); resp.StatusCode != 200 || got != string(body) {
			t.Fatalf("GET with the unix stores down: %d %q", resp.StatusCode, got)
		}
	}
}
