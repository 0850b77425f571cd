package e2e

// What access keys cost on the data path: one keepproxy with a storage of
// two keepstores, the same 64 MiB transfers at c=4 with a token-file token
// and with an access key (Bearer v2/ID/SECRET), alternating, with the
// proxy's peak RSS sampled during each run. Run by make bench:
//
//	go test -run XXX -bench AccessKey -benchtime 1x ./e2e/
//
// With KEEPGATE_ACCESSKEY_OUT=file the figures are also written there.

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// peakRSS samples pid's VmRSS every 20 ms while f runs; MiB.
func peakRSS(pid int, f func()) float64 {
	var mu sync.Mutex
	peak := 0.0
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
					kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
					mu.Lock()
					peak = max(peak, kb/1024)
					mu.Unlock()
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(done)
	mu.Lock()
	defer mu.Unlock()
	return peak
}

func BenchmarkAccessKey(b *testing.B) {
	c := startTenants(b)
	id, secret := c.createKey(b, `{"id":"bench-key","storage":{"name":"tenant-a"}}`)
	keyToken := "v2/" + id + "/" + secret
	blocks := make([][]byte, fairWorkers*fairRounds)
	for i := range blocks {
		blocks[i], _ = volumetest.Block(uint64(40000+i), fairBlock)
	}
	type run struct{ mibs, rss float64 }
	measure := func(token string, get bool, locs []string) run {
		var v float64
		var errs int
		rss := peakRSS(c.Proxy.Cmd.Process.Pid, func() {
			if get {
				v, errs = transfer(4*len(blocks), func(i int) (int64, error) { return fairGet(c.ProxyURL, token, locs[i%len(locs)]) })
			} else {
				v, errs = transfer(len(blocks), func(i int) (int64, error) { _, err := fairPut(c.ProxyURL, token, blocks[i]); return fairBlock, err })
			}
		})
		if errs != 0 {
			b.Fatalf("%d errors", errs)
		}
		return run{v, rss}
	}
	// Locators for each principal's GETs (signed for it).
	locsFor := func(token string) []string {
		var out []string
		for _, blk := range blocks {
			loc, err := fairPut(c.ProxyURL, token, blk)
			if err != nil {
				b.Fatal(err)
			}
			out = append(out, loc)
		}
		return out
	}
	tokLocs, keyLocs := locsFor(testenv.TokenRW), locsFor(keyToken)
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s UTC by `go test -bench AccessKey ./e2e/`: keepproxy with storages (both principals use tenant-a: two keepstores), 64 MiB blocks at c=4 (8 PUTs, 32 GETs a run) with a token-file token and with an access key, 5 alternating runs, medians; peak RSS of keepproxy sampled every 20 ms during each run.\n\n", time.Now().UTC().Format("2006-01-02 15:04"))
	md.WriteString("| transfers | token file MiB/s | access key MiB/s | ratio | peak RSS token file / access key (MiB) |\n|---|---:|---:|---:|---:|\n")
	b.ResetTimer()
	for _, op := range []struct {
		name string
		get  bool
	}{{"PUT replicas 2", false}, {"GET", true}} {
		var tok, key []float64
		var tokRSS, keyRSS float64
		for i := 0; i < 5; i++ {
			order := []bool{false, true}
			if i%2 == 1 {
				order = []bool{true, false}
			}
			for _, useKey := range order {
				if useKey {
					r := measure(keyToken, op.get, keyLocs)
					key, keyRSS = append(key, r.mibs), max(keyRSS, r.rss)
				} else {
					r := measure(testenv.TokenRW, op.get, tokLocs)
					tok, tokRSS = append(tok, r.mibs), max(tokRSS, r.rss)
				}
			}
		}
		fmt.Fprintf(&md, "| %s | %.1f | %.1f | %.2f× | %.0f / %.0f (%.2f×) |\n", op.name, median(tok), median(key), median(key)/median(tok), tokRSS, keyRSS, keyRSS/tokRSS)
	}
	b.StopTimer()
	b.Log("\n" + md.String())
	if out := os.Getenv("KEEPGATE_ACCESSKEY_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
