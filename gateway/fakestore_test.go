package gateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
)

// fakeStore is a minimal keepstore for gateway unit tests, with fault
// injection. The real keepstore is exercised by the end-to-end tests.
type fakeStore struct {
	t    *testing.T
	vol  *memvolume.Volume
	srv  *httptest.Server
	svc  Service
	mu   sync.Mutex
	puts atomic.Int32
	gets atomic.Int32

	refusePut   int   // status to answer PUTs with before reading (0 = none)
	dieAfterPut int64 // close the connection after reading this many bytes (0 = never)
	dieAfterGet int64 // close the connection after sending this many bytes (0 = never)
	corrupt     bool  // flip a byte in the middle of GET bodies
	down        bool  // refuse every request with a closed connection
}

func newFakeStore(t *testing.T, uuid string) *fakeStore {
	f := &fakeStore{t: t, vol: memvolume.New(blockstore.TrashPolicy{})}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	f.svc = Service{UUID: uuid, URL: f.srv.URL}
	return f
}

func (f *fakeStore) set(fn func(*fakeStore)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeStore) snapshot() fakeStore {
	f.mu.Lock()
	defer f.mu.Unlock()
	return fakeStore{refusePut: f.refusePut, dieAfterPut: f.dieAfterPut, dieAfterGet: f.dieAfterGet, corrupt: f.corrupt, down: f.down}
}

func (f *fakeStore) hijackClose(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			c.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func (f *fakeStore) serve(w http.ResponseWriter, r *http.Request) {
	cfg := f.snapshot()
	if cfg.down {
		f.hijackClose(w)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/")
	if strings.HasPrefix(path, "index") {
		prefix := strings.TrimPrefix(strings.TrimPrefix(path, "index"), "/")
		f.vol.Index(r.Context(), prefix, func(i blockstore.BlockInfo) error {
			fmt.Fprintf(w, "%s+%d %d\n", i.Hash, i.Size, i.Mtime.UnixNano())
			return nil
		})
		io.WriteString(w, "\n")
		return
	}
	loc, err := blockstore.ParseLocator(path)
	if err != nil {
		http.Error(w, "invalid locator", 400)
		return
	}
	switch r.Method {
	case http.MethodPut:
		f.puts.Add(1)
		if cfg.refusePut != 0 {
			http.Error(w, "refused", cfg.refusePut)
			return
		}
		var body io.Reader = r.Body
		if cfg.dieAfterPut > 0 {
			buf := make([]byte, cfg.dieAfterPut)
			io.ReadFull(r.Body, buf)
			f.hijackClose(w)
			return
		}
		if err := f.vol.Put(r.Context(), loc.Hash, body, r.ContentLength); err != nil {
			http.Error(w, err.Error(), blockstore.StatusOf(err))
			return
		}
		w.Header().Set("X-Keep-Replicas-Stored", "1")
		if c := r.Header.Get("X-Keep-Storage-Classes"); c != "" {
			w.Header().Set("X-Keep-Storage-Classes-Confirmed", "default=1")
		}
		fmt.Fprintf(w, "%s+%d+A%040x@%08x\n", loc.Hash, r.ContentLength, 1, 0x7fffffff)
	case http.MethodGet, http.MethodHead:
		f.gets.Add(1)
		var off int64
		if rg := r.Header.Get("Range"); rg != "" {
			fmt.Sscanf(rg, "bytes=%d-", &off)
		}
		rc, info, err := f.vol.Get(r.Context(), loc.Hash, off, -1)
		if err != nil {
			http.Error(w, "not found", blockstore.StatusOf(err))
			return
		}
		data, _ := io.ReadAll(rc)
		rc.Close()
		if cfg.corrupt && len(data) > 0 {
			data = bytes.Clone(data)
			data[len(data)/2] ^= 0xff
		}
		w.Header().Set("Content-Length", fmt.Sprint(len(data)))
		if off > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, info.Size-1, info.Size))
			w.WriteHeader(http.StatusPartialContent)
		}
		if r.Method == http.MethodHead {
			return
		}
		if cfg.dieAfterGet > 0 && int64(len(data)) > cfg.dieAfterGet {
			w.Write(data[:cfg.dieAfterGet])
			w.(http.Flusher).Flush()
			f.hijackClose(w)
			return
		}
		w.Write(data)
	default:
		http.Error(w, "bad", 400)
	}
}

func (f *fakeStore) has(h blockstore.Hash) bool {
	_, err := f.vol.Stat(context.Background(), h)
	return err == nil
}
