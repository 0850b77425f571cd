package gatewayapi

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/metering"
)

// splicedCluster is a cluster and its keepproxy_spliced_bytes_total.
func splicedCluster(t *testing.T, n int) (*cluster, func() float64) {
	reg := prometheus.NewRegistry()
	c := newCluster(t, n, func(o *Options) { o.Registry = reg })
	return c, splicedBytes(t, reg)
}

// splicedBytes reads keepproxy_spliced_bytes_total from reg.
func splicedBytes(t *testing.T, reg *prometheus.Registry) func() float64 {
	return func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "keepproxy_spliced_bytes_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		t.Fatal("no keepproxy_spliced_bytes_total")
		return 0
	}
}

// A GET from stores that vouch for their bytes goes socket to socket:
// whole, across a failover mid-body, and for a Range.
func TestGetSpliced(t *testing.T) {
	c, spliced := splicedCluster(t, 3)
	data, h := volumetest.Block(21, 5<<20+333)
	loc := readAll(t, c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "3"}))

	resp := c.do("GET", "/"+loc, tokRW, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET: %d, %d bytes, equal %v", resp.StatusCode, len(got), got == string(data))
	}
	if s := spliced(); s < float64(len(data)-64<<10) {
		t.Fatalf("spliced %.0f of %d bytes", s, len(data))
	}

	ord := c.ordered(h)
	ord[0].set(func(f *testStore) { f.dieAfterGet = 3 << 20 })
	before := spliced()
	resp = c.do("GET", "/"+loc, tokRW, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET with a store cut mid-body: %d, %d bytes, equal %v", resp.StatusCode, len(got), got == string(data))
	}
	if ord[1].gets.Load() == 0 {
		t.Fatal("the second store was not asked for the rest")
	}
	if s := spliced() - before; s < float64(len(data)-128<<10) {
		t.Fatalf("spliced %.0f of %d bytes across the failover", s, len(data))
	}

	ord[0].set(func(f *testStore) { f.dieAfterGet = 0 })
	resp = c.do("GET", "/"+loc, tokRW, nil, map[string]string{"Range": "bytes=1000-4200000"})
	if got := readAll(t, resp); resp.StatusCode != 206 || got != string(data[1000:4200001]) {
		t.Fatalf("Range GET: %d, %d bytes", resp.StatusCode, len(got))
	}
}

// Every copy is damaged (each store stops short at the bad chunk): the
// client never gets a clean 200, also when the bytes are spliced.
func TestGetSplicedEveryStoreShort(t *testing.T) {
	c, _ := splicedCluster(t, 2)
	data, h := volumetest.Block(22, 4<<20)
	loc := readAll(t, c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"}))
	for _, f := range c.stores {
		f.set(func(f *testStore) { f.corrupt = true })
	}
	resp := c.do("GET", "/"+loc, tokRW, nil, nil)
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && len(got) == len(data) {
		t.Fatalf("every copy damaged, yet a whole %d answer", resp.StatusCode)
	}
	if string(got) != string(data[:len(got)]) {
		t.Fatal("a wrong byte reached the client")
	}
}

// A client on TLS (keepproxy serving HTTPS itself) is sent copied bytes:
// TLS needs them in user space.
func TestGetOverTLSIsCopied(t *testing.T) {
	c, spliced := splicedCluster(t, 1)
	data, h := volumetest.Block(23, 2<<20)
	loc := readAll(t, c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "1"}))
	srv := httptest.NewTLSServer(c.gw.Handler())
	defer srv.Close()
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	req, _ := http.NewRequest("GET", srv.URL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+tokRW)
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("GET over TLS: %d, %d bytes", resp.StatusCode, len(got))
	}
	if s := spliced(); s != 0 {
		t.Fatalf("spliced %.0f bytes to a TLS client", s)
	}
}

// lockedPacer is a countingPacer safe to read while a handler uses it.
type lockedPacer struct {
	mu sync.Mutex
	countingPacer
}

func (l *lockedPacer) Wait(ctx context.Context, n int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.countingPacer.Wait(ctx, n)
}

func (l *lockedPacer) paid(t *testing.T) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	sum := 0
	for _, n := range l.waits {
		if n > l.max || n <= 0 {
			t.Fatalf("a segment of %d bytes paid at once (burst %d)", n, l.max)
		}
		sum += n
	}
	l.waits = nil
	return sum
}

// pacingAdmitter paces every transfer's output with its pacer.
type pacingAdmitter struct{ p metering.Pacer }

func (a pacingAdmitter) Admit(_ context.Context, t *metering.Transfer) (func(), error) {
	t.Out = a.p
	return nil, nil
}

// A rate-capped key's GET is spliced too, each segment paid for before it
// is sent and none larger than the pacer's burst.
func TestGetSplicedPaced(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := &lockedPacer{countingPacer: countingPacer{max: 300 << 10}}
	c := newCluster(t, 1, func(o *Options) {
		o.Registry = reg
		o.Meter = &metering.Meter{Admitters: []metering.Admitter{pacingAdmitter{p}}}
	})
	data, h := volumetest.Block(24, 3<<20+17)
	loc := readAll(t, c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "1"}))
	p.paid(t) // the PUT's
	resp := c.do("GET", "/"+loc, tokRW, nil, nil)
	if got := readAll(t, resp); resp.StatusCode != 200 || got != string(data) {
		t.Fatalf("paced GET: %d, %d bytes", resp.StatusCode, len(got))
	}
	c.srv.Close() // the handler has returned
	if paid := p.paid(t); paid != len(data) {
		t.Fatalf("paid for %d bytes of %d", paid, len(data))
	}
	if s := splicedBytes(t, reg)(); s < float64(len(data)-64<<10) {
		t.Fatalf("spliced %.0f of %d bytes of a paced GET", s, len(data))
	}
}
