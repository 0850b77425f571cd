package gatewayapi

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

// drip starts an upload that declares size bytes, sends one, then stalls
// until stop is closed. It returns when the gateway has read the byte.
func drip(t *testing.T, url, method, token string, size int64, stop chan struct{}, wg *sync.WaitGroup) {
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(method, url, pr)
	req.ContentLength = size
	req.Header.Set("Authorization", "Bearer "+token)
	wg.Add(1)
	go func() {
		defer wg.Done()
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write([]byte{0})
	go func() { <-stop; pw.CloseWithError(fmt.Errorf("attacker gave up")) }()
}

// One client's dripping uploads (POSTs declaring 64 MiB, PUTs holding a
// tee window) hold at most its share of the memory budget: another
// client's PUTs go through meanwhile.
func TestDrippingUploadsDoNotStarveOthers(t *testing.T) {
	c := newCluster(t, 2, func(o *Options) { o.MemoryBudget = 64 << 20; o.BudgetWait = 500 * time.Millisecond })
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	for i := 0; i < 4; i++ {
		drip(t, c.srv.URL+"/", "POST", tokRW, blockstore.MaxBlockSize, stop, &wg)
	}
	for i := 0; i < 20; i++ {
		_, h := volumetest.Block(uint64(900+i), 4<<20)
		drip(t, c.srv.URL+"/"+h.String(), "PUT", tokRW, 4<<20, stop, &wg)
	}
	time.Sleep(300 * time.Millisecond)
	for i := 0; i < 4; i++ {
		data, h := volumetest.Block(uint64(950+i), 4<<20)
		resp := c.do("PUT", "/"+h.String(), tokAdmin, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("another client's PUT while one drips: %d %q", resp.StatusCode, body)
		}
	}
}

// An upload far below the minimum rate is cut off with 408 after the grace
// period, and nothing is stored.
func TestUploadBelowMinimumRate(t *testing.T) {
	c := newCluster(t, 1, func(o *Options) { o.MinBodyRate = 1 << 20; o.BodyGrace = 500 * time.Millisecond })
	data, h := volumetest.Block(960, 2<<20)
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(data); off += 1024 {
			if _, err := pw.Write(data[off : off+1024]); err != nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		pw.Close()
	}()
	defer pw.Close()
	req, _ := http.NewRequest("PUT", c.srv.URL+"/"+h.String(), pr)
	req.ContentLength = int64(len(data))
	req.Header.Set("Authorization", "Bearer "+tokRW)
	t0 := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 408 || time.Since(t0) > 5*time.Second {
		t.Fatalf("slow drip: %d after %s, want 408 soon after the grace period", resp.StatusCode, time.Since(t0))
	}
	if _, err := c.stores[0].vol.Stat(context.Background(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("a cut-off upload left a block: %v", err)
	}
}

// GETs whose bodies are never read hold at most the client's share of the
// store request slots; another client's GETs are served meanwhile, and the
// stalled responses are cut off after the write idle timeout.
func TestUnreadGetsDoNotStarveOthers(t *testing.T) {
	c := newCluster(t, 2, func(o *Options) { o.StoreSlots = 40; o.ClientStoreSlots = 10; o.BodyIdleTimeout = 2 * time.Second })
	data, h := volumetest.Block(970, 8<<20)
	resp := c.do("PUT", "/"+h.String(), tokRW, data, map[string]string{"X-Keep-Desired-Replicas": "2"})
	loc, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d", resp.StatusCode)
	}
	var bodies []io.Closer
	defer func() {
		for _, b := range bodies {
			b.Close()
		}
	}()
	refused := 0
	for i := 0; i < 30; i++ {
		tr := &http.Transport{DisableKeepAlives: true, ReadBufferSize: 1024, WriteBufferSize: 1024}
		req, _ := http.NewRequest("GET", c.srv.URL+"/"+string(loc), nil)
		req.Header.Set("Authorization", "Bearer "+tokRW)
		r, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if r.StatusCode == 503 {
			refused++
			r.Body.Close()
			continue
		}
		bodies = append(bodies, r.Body) // never read
	}
	if refused < 15 {
		t.Errorf("only %d of 30 unread GETs refused beyond a share of 10 slots", refused)
	}
	for i := 0; i < 5; i++ {
		resp := c.do("GET", "/"+string(loc), tokAdmin, nil, nil)
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != string(data) {
			t.Fatalf("another client's GET while one does not read: %d, %d bytes", resp.StatusCode, len(got))
		}
	}
}
