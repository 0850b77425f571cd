package gatewayapi

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/node/nodehttp"
	"github.com/keepgate/keepgate/placement"
)

// testStore is a real keepstore (blockstore/node on a memory volume, in
// process) behind the one fault injector of the gateway's tests: refusals,
// connections cut mid-body, a store that is down, a corrupted copy. Every
// answer that is not a fault is the real keepstore's.
type testStore struct {
	t    *testing.T
	vol  *memvolume.Volume
	node http.Handler
	srv  *httptest.Server
	svc  placement.Service
	mu   sync.Mutex
	puts atomic.Int32
	gets atomic.Int32

	refusePut   int   // status to answer PUTs with before reading (0 = none)
	dieAfterPut int64 // close the connection after reading this many bytes (0 = never)
	dieAfterGet int64 // close the connection after sending this many bytes (0 = never)
	corrupt     bool  // the stored copy of a block is damaged before it is read
	down        bool  // refuse every request with a closed connection
	damaged     map[blockstore.Hash]bool
}

func newTestStore(t *testing.T, uuid string) *testStore { return newTestStoreOn(t, uuid, nil) }

// newTestStoreOn serves the store on ln (nil: a loopback TCP port).
func newTestStoreOn(t *testing.T, uuid string, ln net.Listener) *testStore {
	f := &testStore{t: t, vol: memvolume.New(blockstore.TrashPolicy{})}
	n, err := node.New(node.Options{Mounts: []node.Mount{{UUID: strings.Replace(uuid, "-bi6l4-", "-nyw5e-", 1), Volume: f.vol}},
		Signer: &blockstore.Signer{Key: []byte(testStoreSigningKey), TTL: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	f.node = nodehttp.New(n, nodehttp.Options{AdminToken: testStoreAdminToken})
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	if ln != nil {
		f.srv.Listener.Close()
		f.srv.Listener = ln
	}
	f.srv.Start()
	t.Cleanup(f.srv.Close)
	f.svc = placement.Service{UUID: uuid, URL: f.srv.URL}
	return f
}

// testStoreAdminToken is the stores' admin token (the gateway's
// StoreAdminToken in newCluster), for /index.
const testStoreAdminToken = "test-store-admin-token-0123456789"

// testStoreSigningKey is the stores' blob signing key.
const testStoreSigningKey = "teststoresigningkey0123456789abcdefghijklmnopqrstuvwxyz"

func (f *testStore) set(fn func(*testStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *testStore) snapshot() testStore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return testStore{refusePut: f.refusePut, dieAfterPut: f.dieAfterPut, dieAfterGet: f.dieAfterGet, corrupt: f.corrupt, down: f.down}
}

func (f *testStore) hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (f *testStore) serve(w http.ResponseWriter, r *http.Request) {
	cfg := f.snapshot()
	if cfg.down {
		f.hijackClose(w)
		return
	}
	switch r.Method {
	case http.MethodPut:
		f.puts.Add(1)
		switch {
		case cfg.refusePut != 0:
			http.Error(w, "refused", cfg.refusePut)
			return
		case cfg.dieAfterPut > 0:
			io.ReadFull(r.Body, make([]byte, cfg.dieAfterPut))
			f.hijackClose(w)
			return
		}
	case http.MethodGet, http.MethodHead:
		if !strings.HasPrefix(r.URL.Path, "/index") {
			f.gets.Add(1)
		}
		if cfg.corrupt {
			f.damage(r)
		}
		if cfg.dieAfterGet > 0 && r.Method == http.MethodGet {
			f.node.ServeHTTP(&cutWriter{ResponseWriter: w, left: cfg.dieAfterGet, cut: func() { f.hijackClose(w) }}, r)
			return
		}
	}
	f.node.ServeHTTP(w, r)
}

// damage flips a byte in the middle of the stored copy of the block r asks
// for (the keepstore then finds the copy corrupt as it reads it).
func (f *testStore) damage(r *http.Request) {
	loc, err := blockstore.ParseLocator(strings.TrimPrefix(r.URL.Path, "/"))
	if err != nil {
		return
	}
	f.mu.Lock()
	if f.damaged == nil {
		f.damaged = map[blockstore.Hash]bool{}
	}
	again := f.damaged[loc.Hash]
	f.damaged[loc.Hash] = true
	f.mu.Unlock()
	if again { // once: a second flip would repair it
		return
	}
	rc, _, err := f.vol.Get(context.Background(), loc.Hash, 0, -1)
	if err != nil {
		return
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	if len(data) == 0 {
		return
	}
	data = bytes.Clone(data)
	data[len(data)/2] ^= 0xff
	f.vol.Corrupt(loc.Hash, data)
}

// cutWriter passes left body bytes through, then cuts the connection.
type cutWriter struct {
	http.ResponseWriter
	left int64
	cut  func()
	done bool
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.done {
		return 0, io.ErrClosedPipe
	}
	if int64(len(p)) <= c.left {
		c.left -= int64(len(p))
		return c.ResponseWriter.Write(p)
	}
	n, _ := c.ResponseWriter.Write(p[:c.left])
	c.ResponseWriter.(http.Flusher).Flush()
	c.done = true
	c.cut()
	return n, io.ErrClosedPipe
}

func (f *testStore) has(h blockstore.Hash) bool {
	_, err := f.vol.Stat(context.Background(), h)
	return err == nil
}
