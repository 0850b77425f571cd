package e2e

// The audit log's cost and its behaviour under a stalled rsyslogd,
// measured from outside on real processes: three keepstores, and
// keepproxies on them that differ only in their audit configuration. Run
// by make bench:
//
//	go test -run XXX -bench Audit -benchtime 1x ./e2e/
//
// With KEEPGATE_AUDIT_OUT=file the figures are also written there.

import (
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

func BenchmarkAudit(b *testing.B) {
	rs := testenv.StartRsyslog(b)
	off := testenv.StartCluster(b, testenv.ClusterOptions{ProxyExtra: "audit:\n  sinks: []\n"})
	base, err := os.ReadFile(off.ProxyCfg)
	if err != nil {
		b.Fatal(err)
	}
	// Another keepproxy on the same keepstores, with the given audit section.
	proxy := func(auditYAML string) string {
		addr := testenv.FreeAddr(b)
		cfg := strings.Replace(string(base), "listen: "+off.ProxyAddr, "listen: "+addr, 1)
		cfg = strings.Replace(cfg, "audit:\n  sinks: []\n", auditYAML, 1)
		path := testenv.WriteFile(b, off.Dir, fmt.Sprintf("keepproxy-%s.yml", strings.ReplaceAll(addr, ":", "-")), cfg)
		p := testenv.Start(b, testenv.Build(b, "keepproxy"), []string{"-config", path})
		testenv.WaitHTTP(b, "http://"+addr+"/_health/ping", 0, p)
		return "http://" + addr
	}
	syslogDrop := proxy(fmt.Sprintf("audit:\n  sinks:\n    - type: syslog\n      address: tcp://%s\n", rs.TCPAddr))
	syslogReject := proxy(fmt.Sprintf("audit:\n  on_full: reject\n  sinks:\n    - type: syslog\n      address: tcp://%s\n", rs.TCPAddr))

	blocks := make([][]byte, fairWorkers*fairRounds)
	for i := range blocks {
		blocks[i], _ = volumetest.Block(uint64(9000+i), fairBlock)
	}
	locs := make([]string, len(blocks))
	puts := func(url string) func() (float64, int) {
		return func() (float64, int) {
			return transfer(len(blocks), func(i int) (int64, error) {
				loc, err := auditPut(url, blocks[i])
				if err == nil {
					locs[i] = loc
				}
				return fairBlock, err
			})
		}
	}
	gets := func(url string) func() (float64, int) { // each block 4 times: GETs are quick
		return func() (float64, int) {
			return transfer(4*len(blocks), func(i int) (int64, error) { return auditGet(url, locs[i%len(locs)]) })
		}
	}
	if _, errs := puts(off.ProxyURL)(); errs != 0 {
		b.Fatalf("warm-up: %d errors", errs)
	}
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s UTC by `go test -bench Audit ./e2e/`: three keepstores and keepproxies on them that differ only in their audit configuration, rsyslogd (Debian) over TCP on loopback; 64 MiB blocks at c=4 (8 PUTs, 32 GETs a run), 5 alternating runs, medians.\n\n", time.Now().UTC().Format("2006-01-02 15:04"))
	md.WriteString("| transfers | audit off MiB/s | audit to rsyslog MiB/s | ratio |\n|---|---:|---:|---:|\n")
	b.ResetTimer()
	for _, row := range []struct {
		name    string
		off, on func() (float64, int)
	}{{"PUT replicas 2", puts(off.ProxyURL), puts(syslogDrop)}, {"GET", gets(off.ProxyURL), gets(syslogDrop)}} {
		var a, o []float64
		for i := 0; i < 5; i++ {
			var v, w float64
			var e1, e2 int
			if i%2 == 0 { // alternate the order, so that drift cancels
				v, e1 = row.off()
				w, e2 = row.on()
			} else {
				w, e2 = row.on()
				v, e1 = row.off()
			}
			if e1+e2 != 0 {
				b.Fatalf("%s: %d errors", row.name, e1+e2)
			}
			a, o = append(a, v), append(o, w)
		}
		fmt.Fprintf(&md, "| %s | %.1f | %.1f | %.2f× |\n", row.name, median(a), median(o), median(o)/median(a))
	}

	// Small requests at c=4 for 30 s, rsyslogd running, then the same
	// with rsyslogd SIGSTOPped for the whole 30 s (on_full: drop).
	data, _ := volumetest.Block(77, 1024)
	small, err := auditPut(syslogDrop, data)
	if err != nil {
		b.Fatal(err)
	}
	running := latencies(syslogDrop, small, 30*time.Second)
	rs.Stop()
	stalled := latencies(syslogDrop, small, 30*time.Second)
	rs.Cont()
	fmt.Fprintf(&md, "\nSmall GETs (1 KiB) at c=4 for 30 s each, through the keepproxy auditing to rsyslogd (`on_full: drop`):\n\n")
	md.WriteString("| rsyslogd | requests | errors | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|\n")
	for _, r := range []struct {
		name string
		l    latencyRun
	}{{"running", running}, {"SIGSTOPped for the whole run", stalled}} {
		fmt.Fprintf(&md, "| %s | %d | %d | %.2f | %.2f |\n", r.name, len(r.l.d), r.l.errors, ms(r.l.pct(50)), ms(r.l.pct(99)))
	}
	fmt.Fprintf(&md, "\np99 stalled / running: **%.2f×**.\n", float64(stalled.pct(99))/float64(running.pct(99)))

	// Exactness: every event is in rsyslog's file or counted as dropped.
	time.Sleep(2 * time.Second)
	written, dropped := proxyMetric(b, syslogDrop, "keepgate_audit_events_total"), proxyMetric(b, syslogDrop, "keepgate_audit_dropped_total")
	rejectWritten := proxyMetric(b, syslogReject, "keepgate_audit_events_total")
	lines := rs.WaitLines(int(written+rejectWritten), 30*time.Second)
	fmt.Fprintf(&md, "\nAfter SIGCONT: %v events written, %v dropped (`keepgate_audit_dropped_total`), %d in rsyslog's file from that proxy: missing = dropped exactly: **%v**.\n",
		written, dropped, len(lines)-int(rejectWritten), float64(len(lines))-rejectWritten == written)

	// Reject mode: time from SIGSTOP to the first 503, and from SIGCONT to
	// the first success again, under the same small-GET load.
	stopAt := time.Now()
	rs.Stop()
	first503 := untilStatus(syslogReject, small, 503, 60*time.Second)
	toRefusal := time.Since(stopAt)
	rs.Cont()
	contAt := time.Now()
	untilStatus(syslogReject, small, 200, 60*time.Second)
	toRecovery := time.Since(contAt)
	fmt.Fprintf(&md, "\n`on_full: reject`: the first 503 came %.2f s after SIGSTOP (once the socket buffers had filled and an event had waited `stall_after`; %d requests after the stop), the first success again %.2f s after SIGCONT.\n",
		toRefusal.Seconds(), first503, toRecovery.Seconds())
	b.StopTimer()
	b.Log("\n" + md.String())
	if out := os.Getenv("KEEPGATE_AUDIT_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func auditPut(base string, data []byte) (string, error) { return fairPut(base, testenv.TokenRW, data) }

func auditGet(base, loc string) (int64, error) { return fairGet(base, testenv.TokenRW, loc) }

type latencyRun struct {
	d      []time.Duration
	errors int
}

func (l latencyRun) pct(p int) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	return l.d[min(len(l.d)-1, len(l.d)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencies runs GETs of loc at c=4 for d.
func latencies(base, loc string, d time.Duration) latencyRun {
	var mu sync.Mutex
	var run latencyRun
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				t0 := time.Now()
				status := smallGet(base, loc)
				el := time.Since(t0)
				mu.Lock()
				run.d = append(run.d, el)
				if status != 200 {
					run.errors++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(run.d, func(i, j int) bool { return run.d[i] < run.d[j] })
	return run
}

var smallClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 30 * time.Second}

func smallGet(base, loc string) int {
	req, _ := http.NewRequest("GET", base+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	resp, err := smallClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	return resp.StatusCode
}

// untilStatus sends small GETs at c=4 until one answers want; it returns
// how many requests that took.
func untilStatus(base, loc string, want int, limit time.Duration) int64 {
	var n atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	end := time.Now().Add(limit)
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				select {
				case <-done:
					return
				default:
				}
				n.Add(1)
				if smallGet(base, loc) == want {
					once.Do(func() { close(done) })
					return
				}
			}
		}()
	}
	wg.Wait()
	return n.Load()
}

func proxyMetric(t testing.TB, base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	sum := 0.0
	for _, line := range strings.Split(sb.String(), "\n") {
		if strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ") {
			var v float64
			f := strings.Fields(line)
			fmt.Sscan(f[len(f)-1], &v)
			sum += v
		}
	}
	return sum
}
