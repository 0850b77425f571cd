package e2e

// What usage accounting and access keys' limits cost and how exact the
// caps are, measured from outside on real processes. Run by make bench:
//
//	go test -run XXX -bench Usage -benchtime 1x ./e2e/
//
// With KEEPGATE_USAGE_OUT=file the figures are also written there.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

const (
	capKbps   = 400000 // 50 MB/s
	capWindow = 10 * time.Second
)

func BenchmarkUsage(b *testing.B) {
	dir := b.TempDir()
	on := startUsageProxies(b, 1, "path: "+dir+"/keepgate.db")
	// The same keepproxy without state: no accounting, no limits.
	base, err := os.ReadFile(on.cfgs[0])
	if err != nil {
		b.Fatal(err)
	}
	offAddr := testenv.FreeAddr(b)
	var kept []string
	for _, l := range strings.Split(string(base), "\n") {
		if !strings.HasPrefix(l, "state:") && !strings.HasPrefix(l, "admin:") {
			kept = append(kept, l)
		}
	}
	offCfg := strings.Replace(strings.Join(kept, "\n"), "listen: "+on.ProxyAddr, "listen: "+offAddr, 1)
	offProc := testenv.Start(b, testenv.Build(b, "keepproxy"), []string{"-config", testenv.WriteFile(b, dir, "off.yml", offCfg)})
	off := "http://" + offAddr
	testenv.WaitHTTP(b, off+"/_health/ping", 0, offProc)

	unreached := createKeyWith(b, on.admins[0], "unreached", `"target_rate_cap_kbps":100000000,"target_rate_in_cap_kbps":100000000`)
	blocks := make([][]byte, fairWorkers*fairRounds)
	for i := range blocks {
		blocks[i], _ = volumetest.Block(uint64(7000+i), fairBlock)
	}
	locs := map[string][]string{off: make([]string, len(blocks)), on.urls[0]: make([]string, len(blocks))}
	tokens := map[string]string{off: testenv.TokenRW, on.urls[0]: unreached}
	puts := func(url string) func() (float64, int) {
		return func() (float64, int) {
			return transfer(len(blocks), func(i int) (int64, error) {
				loc, err := fairPut(url, tokens[url], blocks[i])
				if err == nil {
					locs[url][i] = loc
				}
				return fairBlock, err
			})
		}
	}
	gets := func(url string) func() (float64, int) {
		return func() (float64, int) {
			return transfer(4*len(blocks), func(i int) (int64, error) { return fairGet(url, tokens[url], locs[url][i%len(blocks)]) })
		}
	}
	idleOff, idleOn := vmRSS(b, offProc.Cmd.Process.Pid), vmRSS(b, on.procs[0].Cmd.Process.Pid)
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s UTC by `go test -bench Usage ./e2e/`: four keepstores in two storages, keepproxies on them; 64 MiB blocks at c=4 (8 PUTs, 32 GETs a run), 7 alternating runs, medians; the load average of the machine (2 cores, shared) at the start: %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04"), loadAvg())
	md.WriteString("Accounting on (SQLite state, an access key with an unreached cap of 100 Gbit/s in and out) against off (no state, a token-file token):\n\n")
	md.WriteString("| transfers | off MiB/s | on MiB/s | on/off, median of the 7 paired runs |\n|---|---:|---:|---:|\n")
	b.ResetTimer()
	for _, row := range []struct {
		name    string
		off, on func() (float64, int)
	}{{"PUT replicas 2", puts(off), puts(on.urls[0])}, {"GET", gets(off), gets(on.urls[0])}} {
		var a, o, r []float64
		for i := 0; i < 7; i++ {
			var v, w float64
			var e1, e2 int
			if i%2 == 0 {
				v, e1 = row.off()
				w, e2 = row.on()
			} else {
				w, e2 = row.on()
				v, e1 = row.off()
			}
			if e1+e2 != 0 {
				b.Fatalf("%s: %d errors", row.name, e1+e2)
			}
			a, o, r = append(a, v), append(o, w), append(r, w/v)
		}
		fmt.Fprintf(&md, "| %s | %.1f | %.1f | **%.3f×** |\n", row.name, median(a), median(o), median(r))
	}
	rssOff, rssOn := vmHWM(b, offProc.Cmd.Process.Pid), vmHWM(b, on.procs[0].Cmd.Process.Pid)
	fmt.Fprintf(&md, "\nProxy peak RSS (VmHWM) after those runs: off %.1f MiB, on %.1f MiB: **%.3f×**; idle before them off %.1f MiB, on %.1f MiB (the state engine's fixed cost), so the transfers added %.1f and %.1f MiB: **%.3f×**.\n",
		float64(rssOff)/1024, float64(rssOn)/1024, float64(rssOn)/float64(rssOff), float64(idleOff)/1024, float64(idleOn)/1024,
		float64(rssOff-idleOff)/1024, float64(rssOn-idleOn)/1024, float64(rssOn-idleOn)/float64(rssOff-idleOff))

	// Caps: a key capped at 50 MB/s with 8 GETs in a loop, beside an
	// uncapped key; then the uncapped key alone.
	capped := createKeyWith(b, on.admins[0], "capped", `"target_rate_cap_kbps":`+strconv.Itoa(capKbps))
	free := createKeyWith(b, on.admins[0], "free", `"max_concurrent_requests":0`)
	capLoc, err := fairPut(on.urls[0], capped, blocks[0])
	if err != nil {
		b.Fatal(err)
	}
	freeLoc, err := fairPut(on.urls[0], free, blocks[1])
	if err != nil {
		b.Fatal(err)
	}
	capBps := float64(capKbps) * 1000 / 8
	// The cap over 10 s, beside the uncapped key.
	var wg sync.WaitGroup
	var cappedRate, firstBeside float64
	wg.Add(2)
	go func() {
		defer wg.Done()
		cappedRate = getLoop(testenv.InsecureClient, on.urls[0], capped, capLoc, 8, capWindow)
	}()
	go func() {
		defer wg.Done()
		firstBeside = getLoop(testenv.InsecureClient, on.urls[0], free, freeLoc, 4, capWindow)
	}()
	wg.Wait()
	// The uncapped key alone, then beside the capped one, alternately in
	// 5-s runs, four pairs: the median of the paired ratios.
	var ratios, alones, besides []float64
	for i := 0; i < 4; i++ {
		alone := getLoop(testenv.InsecureClient, on.urls[0], free, freeLoc, 4, capWindow/2)
		var beside float64
		wg.Add(2)
		go func() { defer wg.Done(); getLoop(testenv.InsecureClient, on.urls[0], capped, capLoc, 8, capWindow/2) }()
		go func() {
			defer wg.Done()
			beside = getLoop(testenv.InsecureClient, on.urls[0], free, freeLoc, 4, capWindow/2)
		}()
		wg.Wait()
		ratios, alones, besides = append(ratios, beside/alone), append(alones, alone), append(besides, beside)
	}
	fmt.Fprintf(&md, "\nA key capped at 50 MB/s (`target_rate_cap_kbps: %d`), 8 GETs in a loop for %s beside an uncapped key's 4 (%.0f MB/s): **%.3f×** its cap. The uncapped key beside the capped one against alone, four alternating pairs of 5-s runs (median %.0f vs %.0f MB/s): **%.3f×** (median of the paired ratios).\n",
		capKbps, capWindow, firstBeside/1e6, cappedRate/capBps, median(besides)/1e6, median(alones)/1e6, median(ratios))

	// A cap lowered while the key's 8 GETs run: the rate from one second
	// after the change on, against the new cap.
	var got atomic.Int64
	done := make(chan struct{})
	go func() {
		countingGetLoop(testenv.InsecureClient, on.urls[0], capped, capLoc, 8, 8*time.Second, &got)
		close(done)
	}()
	time.Sleep(3 * time.Second)
	if code, body := adminCall(b, "PATCH", on.admins[0]+"/access_keys/capped", `{"configuration":{"transfer":{"target_rate_cap_kbps":200000}}}`); code != 200 {
		b.Fatal(code, body)
	}
	time.Sleep(time.Second)
	n0, t0 := got.Load(), time.Now()
	time.Sleep(3 * time.Second)
	lowered := float64(got.Load()-n0) / time.Since(t0).Seconds() / (200000 * 1000 / 8)
	<-done
	fmt.Fprintf(&md, "\nThe cap lowered from 50 to 25 MB/s while those 8 GETs run: from one second after the PATCH on, **%.3f×** the new cap.\n", lowered)

	// Two proxies on one PostgreSQL behind nginx round-robin: each takes
	// half the cap.
	two, _, _ := pgProxies(b, 2, "heartbeat_interval: 500ms")
	front, _ := testenv.NginxFront(b, strings.TrimPrefix(two.urls[0], "http://"), strings.TrimPrefix(two.urls[1], "http://"))
	pgCapped := createKeyWith(b, two.admins[0], "capped-2", `"target_rate_cap_kbps":`+strconv.Itoa(capKbps))
	loc2, err := fairPut(two.urls[0], pgCapped, blocks[2])
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(2 * time.Second) // both proxies have heartbeaten and see each other
	sum := getLoop(testenv.InsecureClient, front, pgCapped, loc2, 8, capWindow)
	fmt.Fprintf(&md, "\nTwo keepproxies on one PostgreSQL behind nginx round-robin, the same key and cap, 8 GETs in a loop for %s: the sum is **%.3f×** the cap (each proxy takes cap ÷ live proxies).\n", capWindow, sum/capBps)

	// Revocation through proxy 0 seen by proxy 1, 100 trials.
	var lat []time.Duration
	probe := two.urls[1] + "/d41d8cd98f00b204e9800998ecf8427e+0"
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("rev-%03d", i)
		tok := createKeyAt(b, two.admins[0], id)
		if !untilAnswer(probe, tok, 200, 5*time.Second) {
			b.Fatalf("%s not accepted by proxy 1", id)
		}
		t0 := time.Now()
		if code, _ := adminCall(b, "DELETE", two.admins[0]+"/access_keys/"+id, ""); code != 204 {
			b.Fatal(code)
		}
		if !untilAnswer(probe, tok, 403, 30*time.Second) {
			b.Fatalf("%s still accepted by proxy 1", id)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	fmt.Fprintf(&md, "\nRevocation through proxy 0 (DELETE answered) until proxy 1 refuses the key, 100 trials: p50 %.1f ms, p99 **%.1f ms**, max %.1f ms (LISTEN/NOTIFY; the cache TTL, 30 s by default, bounds it when the push is lost).\n",
		ms(lat[49]), ms(lat[98]), ms(lat[99]))
	b.StopTimer()
	b.Log("\n" + md.String())
	if out := os.Getenv("KEEPGATE_USAGE_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// createKeyWith creates a tenant-a key with the given transfer
// configuration members; its token.
func createKeyWith(t testing.TB, admin, id, transfer string) string {
	t.Helper()
	secret := strings.Repeat("b", 32) + id
	code, body := adminCall(t, "POST", admin+"/access_keys", `{"id":"`+id+`","secret":"`+secret+`","storage":{"name":"tenant-a"},"configuration":{"transfer":{`+transfer+`}}}`)
	if code != 201 {
		t.Fatalf("create %s: %d %s", id, code, body)
	}
	return "v2/" + id + "/" + secret
}

// getLoop runs workers GET loops of loc for d and returns the bytes per
// second received within d.
func getLoop(client *http.Client, base, token, loc string, workers int, d time.Duration) float64 {
	var n atomic.Int64
	return countingGetLoop(client, base, token, loc, workers, d, &n)
}

// countingGetLoop is getLoop adding what it receives to n as it arrives.
func countingGetLoop(client *http.Client, base, token, loc string, workers int, d time.Duration, n *atomic.Int64) float64 {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 256<<10)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, "GET", base+"/"+loc, nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				for {
					k, err := resp.Body.Read(buf)
					n.Add(int64(k))
					if err != nil {
						break
					}
				}
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	return float64(n.Load()) / min(time.Since(start), d).Seconds()
}

// vmHWM is a process's peak resident set (VmHWM) in KiB.
func vmHWM(t testing.TB, pid int) int64 { return procStatus(t, pid, "VmHWM:") }

// vmRSS is a process's resident set now (VmRSS) in KiB.
func vmRSS(t testing.TB, pid int) int64 { return procStatus(t, pid, "VmRSS:") }

// procStatus reads one KiB figure of /proc/PID/status.
func procStatus(t testing.TB, pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == field {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
