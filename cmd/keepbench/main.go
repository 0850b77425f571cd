// Command keepbench measures keepgate on loopback: it starts a real cluster
// (keepproxy + 3 keepstores on directory volumes) and a raw baseline server
// (MD5-hash-and-discard for PUT, a block served from RAM for GET), then
// times 64 MiB PUTs and GETs at several concurrencies, through the proxy at
// replicas 1 and 2, directly against one store, and against the baseline,
// sampling the peak RSS of every process. It prints one Markdown table and
// writes it to -out. Figures are ratios to baselines measured in the same
// run, because the machine is shared and noisy.
//
//	make build && go run ./cmd/keepbench -out BENCHMARKS.md
package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var (
	outPath  = flag.String("out", "BENCHMARKS.md", "write the result table here")
	binDir   = flag.String("bin", "bin", "directory holding keepproxy and keepstore")
	concList = flag.String("concurrency", "1,4,8", "comma-separated concurrency levels")
	rounds   = flag.Int("rounds", 2, "blocks each worker moves per measurement")
	sinkAddr = flag.String("sink", "", "internal: run the baseline server on this address")
	blockMiB = flag.Int("block-mib", 64, "block size in MiB")
)

const token = "bench-token-0123456789"

func main() {
	flag.Parse()
	if *sinkAddr != "" {
		runSink(*sinkAddr)
		return
	}
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

// runSink is the baseline: PUT bodies are MD5-hashed and discarded; GET
// returns one block from RAM.
func runSink(addr string) {
	block := make([]byte, *blockMiB<<20)
	rand.Read(block)
	http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			h := md5.New()
			buf := make([]byte, 256<<10)
			io.CopyBuffer(h, r.Body, buf)
			fmt.Fprintf(w, "%x+%d", h.Sum(nil), r.ContentLength)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(block)))
		w.Write(block)
	}))
}

type proc struct {
	name string
	cmd  *exec.Cmd
}

type rssSampler struct {
	pids  map[string]int
	mu    sync.Mutex
	peak  map[string]int64
	stop  chan struct{}
	done  chan struct{}
	idle  map[string]int64
	order []string
}

func rss(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (s *rssSampler) start() {
	s.peak = map[string]int64{}
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			s.mu.Lock()
			for n, pid := range s.pids {
				if v := rss(pid); v > s.peak[n] {
					s.peak[n] = v
				}
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	}()
}

func (s *rssSampler) finish() map[string]int64 {
	close(s.stop)
	<-s.done
	return s.peak
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitUp(url string) error {
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not come up", url)
}

func run() error {
	work, err := os.MkdirTemp("", "keepbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	}()
	start := func(name, bin string, args ...string) (*proc, error) {
		c := exec.Command(bin, args...)
		lf, _ := os.Create(filepath.Join(work, name+".log"))
		c.Stdout, c.Stderr = lf, lf
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return nil, err
		}
		p := &proc{name: name, cmd: c}
		procs = append(procs, p)
		return p, nil
	}
	secret := func(name, val string) string {
		p := filepath.Join(work, name)
		os.WriteFile(p, []byte(val), 0o600)
		return p
	}
	keyFile := secret("signing.key", "benchsigningkey0123456789abcdefghijklmnopqrstuvwxyz")
	adminFile := secret("admin.token", "bench-admin-token-0123456789")
	self, _ := os.Executable()

	sink := freeAddr()
	if _, err := start("baseline", self, "-sink", sink, "-block-mib", strconv.Itoa(*blockMiB)); err != nil {
		return err
	}
	var storeURLs []string
	pids := map[string]int{"baseline": procs[0].cmd.Process.Pid}
	for i := 0; i < 3; i++ {
		addr := freeAddr()
		root := filepath.Join(work, fmt.Sprintf("vol%d", i))
		os.MkdirAll(root, 0o700)
		cfg := fmt.Sprintf("listen: %s\nblob_signing_key_file: %s\nadmin_token_file: %s\nlog_level: warn\nvolumes:\n  - driver: Directory\n    directory:\n      root: %s\n      reserve: -1\n", addr, keyFile, adminFile, root)
		cfgPath := filepath.Join(work, fmt.Sprintf("keepstore%d.yml", i))
		os.WriteFile(cfgPath, []byte(cfg), 0o600)
		p, err := start(fmt.Sprintf("keepstore%d", i), filepath.Join(*binDir, "keepstore"), "-config", cfgPath)
		if err != nil {
			return err
		}
		pids[p.name] = p.cmd.Process.Pid
		storeURLs = append(storeURLs, "http://"+addr)
	}
	tokens := filepath.Join(work, "tokens.yml")
	os.WriteFile(tokens, []byte("tokens:\n  - name: bench\n    token: "+token+"\n    scopes: [read, write]\n"), 0o600)
	proxyAddr := freeAddr()
	var stores strings.Builder
	for i, u := range storeURLs {
		fmt.Fprintf(&stores, "  - url: %s\n    uuid: zzzzz-bi6l4-00000000000000%d\n", u, i)
	}
	pcfg := filepath.Join(work, "keepproxy.yml")
	os.WriteFile(pcfg, []byte(fmt.Sprintf("listen: %s\ntoken_file: %s\nlog_level: warn\nstores:\n%s", proxyAddr, tokens, stores.String())), 0o600)
	p, err := start("keepproxy", filepath.Join(*binDir, "keepproxy"), "-config", pcfg)
	if err != nil {
		return err
	}
	pids["keepproxy"] = p.cmd.Process.Pid
	for _, u := range append(storeURLs, "http://"+proxyAddr, "http://"+sink) {
		if err := waitUp(u + "/_health/ping"); err != nil {
			return err
		}
	}
	var concs []int
	maxc := 0
	for _, s := range strings.Split(*concList, ",") {
		n, _ := strconv.Atoi(strings.TrimSpace(s))
		if n > 0 {
			concs = append(concs, n)
			maxc = max(maxc, n)
		}
	}
	size := *blockMiB << 20
	fmt.Fprintf(os.Stderr, "generating %d random %d MiB blocks\n", maxc, *blockMiB)
	blocks := make([][]byte, maxc)
	hashes := make([]string, maxc)
	for i := range blocks {
		blocks[i] = make([]byte, size)
		rand.Read(blocks[i])
		hashes[i] = fmt.Sprintf("%x", md5.Sum(blocks[i]))
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true, WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10}}
	sampler := &rssSampler{pids: pids}
	idle := map[string]int64{}
	for n, pid := range pids {
		idle[n] = rss(pid)
	}
	type row struct {
		target, op string
		conc       int
		mbps       float64
		peak       map[string]int64
		errs       int64
	}
	var rows []row
	signed := make([]string, maxc) // locators signed for the bench token, for GETs
	var signedMu sync.Mutex
	sinkURL := "http://" + sink
	measure := func(target, op, base string, replicas, conc int) row {
		var errs atomic.Int64
		var bytesMoved atomic.Int64
		sampler.start()
		t0 := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for r := 0; r < *rounds; r++ {
					var req *http.Request
					if op == "PUT" {
						req, _ = http.NewRequest("PUT", base+"/"+hashes[w], bytes.NewReader(blocks[w]))
						req.Header.Set("X-Keep-Desired-Replicas", strconv.Itoa(replicas))
					} else {
						signedMu.Lock()
						loc := signed[w]
						signedMu.Unlock()
						req, _ = http.NewRequest("GET", base+"/"+loc, nil)
					}
					req.Header.Set("Authorization", "Bearer "+token)
					resp, err := client.Do(req)
					if err != nil {
						errs.Add(1)
						continue
					}
					var body bytes.Buffer
					var n int64
					if op == "PUT" {
						io.Copy(&body, resp.Body)
						n = int64(size)
					} else {
						n, _ = io.Copy(io.Discard, resp.Body)
					}
					resp.Body.Close()
					if resp.StatusCode != 200 || (op == "GET" && n != int64(size)) {
						errs.Add(1)
						continue
					}
					if op == "PUT" && base != sinkURL {
						signedMu.Lock()
						signed[w] = strings.TrimSpace(body.String())
						signedMu.Unlock()
					}
					bytesMoved.Add(n)
				}
			}(w)
		}
		wg.Wait()
		el := time.Since(t0).Seconds()
		peak := sampler.finish()
		r := row{target: target, op: op, conc: conc, mbps: float64(bytesMoved.Load()) / el / (1 << 20), peak: peak, errs: errs.Load()}
		fmt.Fprintf(os.Stderr, "%-22s %-4s c=%d %8.1f MiB/s errors=%d\n", target, op, conc, r.mbps, r.errs)
		return r
	}
	proxy, store0 := "http://"+proxyAddr, storeURLs[0]
	for _, c := range concs {
		rows = append(rows,
			measure("baseline (MD5 sink)", "PUT", sinkURL, 1, c),
			measure("keepstore direct", "PUT", store0, 1, c),
			measure("keepproxy replicas=1", "PUT", proxy, 1, c),
			measure("keepproxy replicas=2", "PUT", proxy, 2, c),
			measure("baseline (RAM)", "GET", sinkURL, 1, c),
			measure("keepstore direct", "GET", store0, 1, c),
			measure("keepproxy", "GET", proxy, 1, c),
		)
	}
	// Ratios against the same-run baselines.
	find := func(target, op string, c int) float64 {
		for _, r := range rows {
			if r.target == target && r.op == op && r.conc == c {
				return r.mbps
			}
		}
		return 0
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# keepgate benchmarks\n\nMeasured by `make bench` (cmd/keepbench) on %s, %d MiB random blocks, %d blocks per worker per row, everything on loopback on one 2-core machine (client, proxy, 3 keepstores on directory volumes on one disk). Ratios are to baselines measured in the same run: PUT rows to the MD5-and-discard sink, GET rows to direct keepstore GET. Peak RSS is above each process's idle RSS.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *blockMiB, *rounds)
	b.WriteString("| target | op | concurrency | MiB/s | ratio | peak RSS above idle (MiB) | errors |\n|---|---|---:|---:|---:|---|---:|\n")
	for _, r := range rows {
		base := find("baseline (MD5 sink)", "PUT", r.conc)
		if r.op == "GET" {
			base = find("keepstore direct", "GET", r.conc)
		}
		ratio := "-"
		if base > 0 && !strings.HasPrefix(r.target, "baseline") {
			ratio = fmt.Sprintf("%.0f%%", 100*r.mbps/base)
		}
		var mem []string
		for _, n := range []string{"keepproxy", "keepstore0", "keepstore1", "keepstore2"} {
			mem = append(mem, fmt.Sprintf("%s %.0f", strings.TrimPrefix(n, "keep"), float64(r.peak[n]-idle[n])/(1<<20)))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %s | %s | %d |\n", r.target, r.op, r.conc, r.mbps, ratio, strings.Join(mem, ", "), r.errs)
	}
	put2 := find("keepproxy replicas=2", "PUT", 4) / find("baseline (MD5 sink)", "PUT", 4)
	get4 := find("keepproxy", "GET", 4) / find("keepstore direct", "GET", 4)
	var proxyPeak int64
	for _, r := range rows {
		if r.target == "keepproxy replicas=2" && r.op == "PUT" && r.conc == 8 {
			proxyPeak = r.peak["keepproxy"] - idle["keepproxy"]
		}
	}
	fmt.Fprintf(&b, "\nTargets: proxy PUT replicas=2 c=4 vs MD5 sink = **%.0f%%** (target ≥ 50%%); proxy GET c=4 vs direct keepstore GET = **%.0f%%** (target ≥ 80%%); proxy peak RSS above idle under 8 concurrent 64 MiB PUTs = **%.0f MiB** (target ≤ 64 MiB).\n", 100*put2, 100*get4, float64(proxyPeak)/(1<<20))
	fmt.Print(b.String())
	return os.WriteFile(*outPath, []byte(b.String()), 0o644)
}
