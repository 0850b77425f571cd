// Command keepbench measures keepgate on loopback: it starts a real cluster
// (keepproxy + 3 keepstores on directory volumes) and a raw baseline server
// (MD5-hash-and-discard for PUT, a block served from RAM for GET), then
// times 64 MiB PUTs and GETs at several concurrencies, through the proxy at
// replicas 1 and 2, directly against one store, and against the baseline,
// sampling the peak RSS of every process and the CPU time (user + system,
// from /proc/PID/stat) of every server process, reported per GiB moved
// next to the CPU of one MD5 pass over a GiB measured in the same run. It
// prints one Markdown table and writes it to -out. Figures are ratios to
// baselines measured in the same run, because the machine is shared and
// noisy. With -before DIR (an earlier build's keepproxy and keepstore) it
// starts a second cluster from those binaries and measures the main rows
// on both, alternating, for before/after ratios from one run.
//
//	make build && go run ./cmd/keepbench -out BENCHMARKS.md
//	git worktree add .cache/before HEAD~1 && (cd .cache/before && go build -o ../before-bin/ ./cmd/keepproxy ./cmd/keepstore)
//	go run ./cmd/keepbench -before .cache/before-bin -out BENCHMARKS.md
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/keepgate/keepgate/blockstore/keepwire"
)

var (
	outPath  = flag.String("out", "BENCHMARKS.md", "write the result table here")
	binDir   = flag.String("bin", "bin", "directory holding keepproxy and keepstore")
	concList = flag.String("concurrency", "1,4,8", "comma-separated concurrency levels")
	rounds   = flag.Int("rounds", 2, "blocks each worker moves per measurement")
	sinkAddr = flag.String("sink", "", "internal: run the baseline server on this address")
	blockMiB = flag.Int("block-mib", 64, "block size in MiB")
	before   = flag.String("before", "", "directory holding an earlier keepproxy and keepstore: also start a cluster from them and alternate the main rows against it")
)

const (
	token      = "bench-token-0123456789"
	writeToken = "bench-store-write-token-0123456789" // the keepstores' write token, keepproxy's store write token
)

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

// benchCluster is one keepproxy with its 3 keepstores.
type benchCluster struct {
	label     string // "" for this build, "before-" for -before
	proxy     string // base URL
	proxyAddr string
	stores    []string // base URLs
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times (100 on every
// Linux architecture Go supports).
const clockTicks = 100

// cpuSeconds is the user + system CPU time of process pid so far.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	f := strings.Fields(rest) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return float64(utime+stime) / clockTicks
}

// serverCPU sums cpuSeconds over every server process.
func serverCPU(pids map[string]int) float64 {
	var sum float64
	for _, pid := range pids {
		sum += cpuSeconds(pid)
	}
	return sum
}

// md5CPUPerGiB measures the CPU of one MD5 pass over a GiB in this
// process (user + system, getrusage), over the bench blocks.
func md5CPUPerGiB(blocks [][]byte) float64 {
	cpu := func() float64 {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	var hashed int64
	c0 := cpu()
	for hashed < 1<<30 {
		for _, b := range blocks {
			md5.Sum(b)
			hashed += int64(len(b))
		}
	}
	return (cpu() - c0) / (float64(hashed) / (1 << 30))
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
	writeFile := secret("write.token", writeToken)
	pids := map[string]int{"baseline": procs[0].cmd.Process.Pid}
	tokens := filepath.Join(work, "tokens.yml")
	os.WriteFile(tokens, []byte("tokens:\n  - name: bench\n    token: "+token+"\n    scopes: [read, write]\n"), 0o600)
	// startCluster starts keepproxy and 3 keepstores from the binaries in
	// bin, as make run configures them (the stores' write token held by
	// keepproxy, which re-signs locators).
	startCluster := func(label, bin string) (*benchCluster, error) {
		bc := &benchCluster{label: label}
		for i := 0; i < 3; i++ {
			addr := freeAddr()
			root := filepath.Join(work, fmt.Sprintf("%svol%d", label, i))
			os.MkdirAll(root, 0o700)
			cfg := fmt.Sprintf("listen: %s\nblob_signing_key_file: %s\nadmin_token_file: %s\nwrite_token_file: %s\nlog_level: warn\nvolumes:\n  - driver: Directory\n    directory:\n      root: %s\n      reserve: -1\n", addr, keyFile, adminFile, writeFile, root)
			cfgPath := filepath.Join(work, fmt.Sprintf("%skeepstore%d.yml", label, i))
			os.WriteFile(cfgPath, []byte(cfg), 0o600)
			p, err := start(fmt.Sprintf("%skeepstore%d", label, i), filepath.Join(bin, "keepstore"), "-config", cfgPath)
			if err != nil {
				return nil, err
			}
			pids[p.name] = p.cmd.Process.Pid
			bc.stores = append(bc.stores, "http://"+addr)
		}
		proxyAddr := freeAddr()
		var stores strings.Builder
		for i, u := range bc.stores {
			fmt.Fprintf(&stores, "  - url: %s\n    uuid: zzzzz-bi6l4-00000000000000%d\n", u, i)
		}
		pcfg := filepath.Join(work, label+"keepproxy.yml")
		os.WriteFile(pcfg, []byte(fmt.Sprintf("listen: %s\ntoken_file: %s\nstore_write_token_file: %s\nblob_signing_key_file: %s\nlog_level: warn\nstores:\n%s", proxyAddr, tokens, writeFile, keyFile, stores.String())), 0o600)
		p, err := start(label+"keepproxy", filepath.Join(bin, "keepproxy"), "-config", pcfg)
		if err != nil {
			return nil, err
		}
		pids[p.name] = p.cmd.Process.Pid
		bc.proxyAddr, bc.proxy = proxyAddr, "http://"+proxyAddr
		for _, u := range append(bc.stores, bc.proxy) {
			if err := waitUp(u + "/_health/ping"); err != nil {
				return nil, err
			}
		}
		return bc, nil
	}
	cur, err := startCluster("", *binDir)
	if err != nil {
		return err
	}
	var old *benchCluster
	if *before != "" {
		if old, err = startCluster("before-", *before); err != nil {
			return err
		}
	}
	storeURLs, proxyAddr := cur.stores, cur.proxyAddr
	if err := waitUp("http://" + sink + "/_health/ping"); err != nil {
		return err
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
	md5PerGiB := md5CPUPerGiB(blocks)
	fmt.Fprintf(os.Stderr, "one MD5 pass: %.2f CPU-seconds per GiB\n", md5PerGiB)
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
		cpuPerGiB  float64 // CPU-seconds of all server processes per GiB moved
	}
	var rows []row
	// Locators signed for the bench token, per cluster, for GETs.
	signed := map[*benchCluster][]string{cur: make([]string, maxc), nil: make([]string, maxc)}
	if old != nil {
		signed[old] = make([]string, maxc)
	}
	var signedMu sync.Mutex
	sinkURL := "http://" + sink
	// measureOps runs conc workers, each calling fn rounds times.
	measureOps := func(target, op string, conc int, fn func(w int) (int64, error)) row {
		var errs atomic.Int64
		var bytesMoved atomic.Int64
		cpu0 := serverCPU(pids)
		sampler.start()
		t0 := time.Now()
		var wg sync.WaitGroup
		for w := 0; w < conc; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for r := 0; r < *rounds; r++ {
					n, err := fn(w)
					if err != nil {
						errs.Add(1)
						continue
					}
					bytesMoved.Add(n)
				}
			}(w)
		}
		wg.Wait()
		el := time.Since(t0).Seconds()
		peak := sampler.finish()
		cpu := serverCPU(pids) - cpu0
		r := row{target: target, op: op, conc: conc, mbps: float64(bytesMoved.Load()) / el / (1 << 20), peak: peak, errs: errs.Load()}
		if moved := bytesMoved.Load(); moved > 0 {
			r.cpuPerGiB = cpu / (float64(moved) / (1 << 30))
		}
		fmt.Fprintf(os.Stderr, "%-34s %-4s c=%d %8.1f MiB/s %5.2f CPU-s/GiB errors=%d\n", target, op, conc, r.mbps, r.cpuPerGiB, r.errs)
		return r
	}
	// measure times PUT or GET of the blocks against base; bc is the
	// cluster base belongs to (nil: the sink or the S3 store), for signed
	// locators and for the write token that its stores require directly.
	measure := func(target, op, base string, bc *benchCluster, replicas, conc int) row {
		cl := client
		if strings.HasPrefix(base, "https:") {
			cl = tlsClient
		}
		direct := bc != nil && slices.Contains(bc.stores, base)
		locs := signed[bc]
		return measureOps(target, op, conc, func(w int) (int64, error) {
			var req *http.Request
			tok := token
			if op == "PUT" {
				req, _ = http.NewRequest("PUT", base+"/"+hashes[w], bytes.NewReader(blocks[w]))
				req.Header.Set(keepwire.DesiredReplicas, strconv.Itoa(replicas))
				if direct {
					tok = writeToken
				}
			} else {
				signedMu.Lock()
				loc := locs[w]
				signedMu.Unlock()
				req, _ = http.NewRequest("GET", base+"/"+loc, nil)
			}
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := cl.Do(req)
			if err != nil {
				return 0, err
			}
			defer resp.Body.Close()
			if op == "PUT" {
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 {
					return 0, fmt.Errorf("PUT: %d", resp.StatusCode)
				}
				if base != sinkURL && tok == token {
					signedMu.Lock()
					locs[w] = strings.TrimSpace(string(body))
					signedMu.Unlock()
				}
				return int64(size), nil
			}
			n, err := io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 200 || n != int64(size) || err != nil {
				return 0, fmt.Errorf("GET: %d, %d bytes, %v", resp.StatusCode, n, err)
			}
			return n, nil
		})
	}
	nginxURL := startNginx(work, proxyAddr, start)
	mio := startMinIO(work, start)
	var s3Store string
	if mio != nil {
		pids["minio"] = mio.pid
		s3Store, err = startS3Store(work, keyFile, adminFile, mio, start, pids)
		if err != nil {
			return err
		}
	}
	proxy := cur.proxy
	// pair measures a row on this build's cluster and, with -before, the
	// same row on the earlier build's right after it.
	pair := func(target, op string, store bool, replicas, c int) []row {
		base := func(bc *benchCluster) string {
			if store {
				return bc.stores[0]
			}
			return bc.proxy
		}
		out := []row{measure(target, op, base(cur), cur, replicas, c)}
		if old != nil {
			out = append(out, measure("before: "+target, op, base(old), old, replicas, c))
		}
		return out
	}
	for _, c := range concs {
		rows = append(rows, measure("baseline (MD5 sink)", "PUT", sinkURL, nil, 1, c))
		rows = append(rows, pair("keepstore direct", "PUT", true, 1, c)...)
		rows = append(rows, measure("keepproxy replicas=1", "PUT", proxy, cur, 1, c))
		rows = append(rows, pair("keepproxy replicas=2", "PUT", false, 2, c)...)
		rows = append(rows,
			// The ceiling for replicas=2 on this machine: each block written to
			// two keepstores at once by the client itself, no proxy.
			measureOps("2 keepstores direct, in parallel", "PUT", c, func(w int) (int64, error) {
				errs := make(chan error, 2)
				for _, st := range storeURLs[:2] {
					go func(st string) {
						req, _ := http.NewRequest("PUT", st+"/"+hashes[w], bytes.NewReader(blocks[w]))
						req.Header.Set("Authorization", "Bearer "+writeToken)
						resp, err := client.Do(req)
						if err == nil {
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							if resp.StatusCode != 200 {
								err = fmt.Errorf("PUT: %d", resp.StatusCode)
							}
						}
						errs <- err
					}(st)
				}
				if err := errors.Join(<-errs, <-errs); err != nil {
					return 0, err
				}
				return int64(size), nil
			}),
			measure("baseline (RAM)", "GET", sinkURL, nil, 1, c))
		rows = append(rows, pair("keepstore direct", "GET", true, 1, c)...)
		rows = append(rows, pair("keepproxy", "GET", false, 1, c)...)
		if nginxURL != "" {
			rows = append(rows,
				measure("nginx TLS → keepproxy replicas=2", "PUT", nginxURL, cur, 2, c),
				measure("nginx TLS → keepproxy", "GET", nginxURL, cur, 1, c))
		}
		if mio != nil && c <= 4 {
			rows = append(rows,
				measure("keepstore on MinIO (S3 volume)", "PUT", s3Store, nil, 1, c),
				measure("keepstore on MinIO (S3 volume)", "GET", s3Store, nil, 1, c),
				measureOps("minio-go PutObject (one PUT)", "PUT", c, func(w int) (int64, error) { return mio.put(hashes[w], blocks[w]) }),
				measureOps("minio-go GetObject", "GET", c, func(w int) (int64, error) { return mio.get(hashes[w]) }))
		}
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
	fmt.Fprintf(&b, "# keepgate benchmarks\n\nMeasured by `make bench` (cmd/keepbench) on %s, %d MiB random blocks, %d blocks per worker per row, everything on loopback on one 2-core machine (client, proxy, 3 keepstores on directory volumes on one disk). Ratios are to baselines measured in the same run: PUT rows to the MD5-and-discard sink, GET rows to direct keepstore GET; nginx rows to the same operation straight to keepproxy; MinIO rows (keepstore with an S3 volume on a local MinIO) to minio-go's own PutObject/GetObject against the same server. Peak RSS is above each process's idle RSS.\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"), *blockMiB, *rounds)
	fmt.Fprintf(&b, "Server CPU is the user + system time of every server process (keepproxy, keepstores, the sink, MinIO; from /proc/PID/stat around each row) per GiB moved; one MD5 pass over a GiB took **%.2f CPU-seconds** in this run, and the × MD5 column divides by that.\n\n", md5PerGiB)
	b.WriteString("| target | op | concurrency | MiB/s | ratio | server CPU s/GiB | × MD5 | peak RSS above idle (MiB) | errors |\n|---|---|---:|---:|---:|---:|---:|---|---:|\n")
	for _, r := range rows {
		base := find("baseline (MD5 sink)", "PUT", r.conc)
		if r.op == "GET" {
			base = find("keepstore direct", "GET", r.conc)
		}
		switch {
		case strings.HasPrefix(r.target, "before: ") && r.op == "PUT":
			base = find("baseline (MD5 sink)", "PUT", r.conc)
		case strings.HasPrefix(r.target, "before: "):
			base = find("before: keepstore direct", "GET", r.conc)
		case strings.HasPrefix(r.target, "nginx") && r.op == "PUT":
			base = find("keepproxy replicas=2", "PUT", r.conc)
		case strings.HasPrefix(r.target, "nginx"):
			base = find("keepproxy", "GET", r.conc)
		case strings.HasPrefix(r.target, "keepstore on MinIO") && r.op == "PUT":
			base = find("minio-go PutObject (one PUT)", "PUT", r.conc)
		case strings.HasPrefix(r.target, "keepstore on MinIO"):
			base = find("minio-go GetObject", "GET", r.conc)
		case strings.HasPrefix(r.target, "minio-go"):
			base = 0
		}
		ratio := "-"
		if base > 0 && !strings.HasPrefix(r.target, "baseline") {
			ratio = fmt.Sprintf("%.0f%%", 100*r.mbps/base)
		}
		var mem []string
		names := []string{"keepproxy", "keepstore0", "keepstore1", "keepstore2", "keepstore-s3"}
		if strings.HasPrefix(r.target, "before: ") {
			names = []string{"before-keepproxy", "before-keepstore0", "before-keepstore1", "before-keepstore2"}
		}
		for _, n := range names {
			if _, ok := pids[n]; !ok {
				continue
			}
			mem = append(mem, fmt.Sprintf("%s %.0f", strings.TrimPrefix(n, "keep"), float64(r.peak[n]-idle[n])/(1<<20)))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f | %s | %.2f | %.2f | %s | %d |\n", r.target, r.op, r.conc, r.mbps, ratio, r.cpuPerGiB, r.cpuPerGiB/md5PerGiB, strings.Join(mem, ", "), r.errs)
	}
	cpuOf := func(target, op string, c int) float64 {
		for _, r := range rows {
			if r.target == target && r.op == op && r.conc == c {
				return r.cpuPerGiB
			}
		}
		return 0
	}
	if old != nil {
		b.WriteString("\n## Before and after, measured alternately in this run\n\nThe earlier build (`-before`) ran as a second cluster of the same shape on the same machine; each row below was measured on this build and then at once on the earlier one.\n\n| row | concurrency | MiB/s after / before | ratio | server CPU s/GiB after / before (× MD5) |\n|---|---:|---:|---:|---:|\n")
		for _, c := range concs {
			for _, tr := range [][2]string{{"keepstore direct", "PUT"}, {"keepproxy replicas=2", "PUT"}, {"keepstore direct", "GET"}, {"keepproxy", "GET"}} {
				a, o := find(tr[0], tr[1], c), find("before: "+tr[0], tr[1], c)
				ca, co := cpuOf(tr[0], tr[1], c), cpuOf("before: "+tr[0], tr[1], c)
				if o == 0 {
					continue
				}
				fmt.Fprintf(&b, "| %s %s | %d | %.0f / %.0f | **%.2f×** | %.2f / %.2f (%.2f / %.2f) |\n", tr[0], tr[1], c, a, o, a/o, ca, co, ca/md5PerGiB, co/md5PerGiB)
			}
		}
	}
	put2 := find("keepproxy replicas=2", "PUT", 4) / find("baseline (MD5 sink)", "PUT", 4)
	get4 := find("keepproxy", "GET", 4) / find("keepstore direct", "GET", 4)
	var proxyPeak int64
	for _, r := range rows {
		if r.target == "keepproxy replicas=2" && r.op == "PUT" && r.conc == 8 {
			proxyPeak = r.peak["keepproxy"] - idle["keepproxy"]
		}
	}
	fmt.Fprintf(&b, "\nFor scale: writing each block to two keepstores at once straight from the client (no proxy) reaches %.0f MiB/s at concurrency 4, i.e. %.0f%% of the MD5 sink; keepproxy replicas=2 reaches %.0f%% of that ceiling.\n",
		find("2 keepstores direct, in parallel", "PUT", 4), 100*find("2 keepstores direct, in parallel", "PUT", 4)/find("baseline (MD5 sink)", "PUT", 4),
		100*find("keepproxy replicas=2", "PUT", 4)/find("2 keepstores direct, in parallel", "PUT", 4))
	fmt.Fprintf(&b, "\nTargets: proxy PUT replicas=2 c=4 vs MD5 sink = **%.0f%%** (target ≥ 60%%); proxy GET c=4 vs direct keepstore GET = **%.0f%%** (target ≥ 95%%); proxy peak RSS above idle under 8 concurrent 64 MiB PUTs = **%.0f MiB** (target ≤ 64 MiB).\n", 100*put2, 100*get4, float64(proxyPeak)/(1<<20))
	fmt.Fprintf(&b, "\nServer CPU per GiB at c=4 vs one MD5 pass: replicated PUT (replicas=2) **%.2f×** (target ≤ 3.0×); GET through keepproxy **%.2f×** (target ≤ 0.8×); direct keepstore GET %.2f×.\n",
		cpuOf("keepproxy replicas=2", "PUT", 4)/md5PerGiB, cpuOf("keepproxy", "GET", 4)/md5PerGiB, cpuOf("keepstore direct", "GET", 4)/md5PerGiB)
	if old != nil && find("before: keepstore direct", "GET", 4) > 0 {
		fmt.Fprintf(&b, "\nBefore/after at c=4: keepstore GET **%.2f×** (target ≥ 1.5×); keepproxy GET %.2f×; PUT replicas=2 %.2f×.\n",
			find("keepstore direct", "GET", 4)/find("before: keepstore direct", "GET", 4), find("keepproxy", "GET", 4)/find("before: keepproxy", "GET", 4),
			find("keepproxy replicas=2", "PUT", 4)/find("before: keepproxy replicas=2", "PUT", 4))
	}
	if nginxURL != "" {
		fmt.Fprintf(&b, "\nnginx TLS in front of keepproxy, concurrency 4: PUT replicas=2 %.0f MiB/s vs %.0f MiB/s straight to keepproxy (**%.0f%%**); GET %.0f vs %.0f MiB/s (**%.0f%%**).\n",
			find("nginx TLS → keepproxy replicas=2", "PUT", 4), find("keepproxy replicas=2", "PUT", 4), 100*find("nginx TLS → keepproxy replicas=2", "PUT", 4)/find("keepproxy replicas=2", "PUT", 4),
			find("nginx TLS → keepproxy", "GET", 4), find("keepproxy", "GET", 4), 100*find("nginx TLS → keepproxy", "GET", 4)/find("keepproxy", "GET", 4))
	}
	if mio != nil {
		for _, c := range []int{1, 4} {
			if find("minio-go PutObject (one PUT)", "PUT", c) == 0 {
				continue
			}
			fmt.Fprintf(&b, "\nkeepstore with an S3 volume on MinIO, concurrency %d: PUT %.0f MiB/s vs minio-go PutObject %.0f MiB/s (**%.0f%%**); GET %.0f vs minio-go GetObject %.0f MiB/s (**%.0f%%**).\n", c,
				find("keepstore on MinIO (S3 volume)", "PUT", c), find("minio-go PutObject (one PUT)", "PUT", c), 100*find("keepstore on MinIO (S3 volume)", "PUT", c)/find("minio-go PutObject (one PUT)", "PUT", c),
				find("keepstore on MinIO (S3 volume)", "GET", c), find("minio-go GetObject", "GET", c), 100*find("keepstore on MinIO (S3 volume)", "GET", c)/find("minio-go GetObject", "GET", c))
		}
	}
	// Hand-written notes (profiles, analysis) after the marker line of the
	// previous file are kept.
	if prev, err := os.ReadFile(*outPath); err == nil {
		if i := bytes.Index(prev, []byte(notesMarker)); i >= 0 {
			b.WriteString("\n")
			b.Write(prev[i:])
		}
	}
	fmt.Print(b.String())
	return os.WriteFile(*outPath, []byte(b.String()), 0o644)
}

// notesMarker starts the hand-written part of BENCHMARKS.md, which a new
// run keeps.
const notesMarker = "<!-- notes: kept by keepbench -->"

var tlsClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 64, DisableCompression: true, WriteBufferSize: 256 << 10, ReadBufferSize: 256 << 10}}

type starter func(name, bin string, args ...string) (*proc, error)

// startNginx puts nginx with TLS (deploy/nginx, a self-signed certificate)
// in front of keepproxy; "" when nginx or openssl is not installed.
func startNginx(work, upstream string, start starter) string {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			fmt.Fprintln(os.Stderr, "nginx not installed: skipping the nginx rows")
			return ""
		}
		nginx = "/usr/sbin/nginx"
	}
	dir := filepath.Join(work, "nginx")
	os.MkdirAll(filepath.Join(dir, "logs"), 0o755)
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o755)
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if out, err := exec.Command("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
		"-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "openssl failed (%v): skipping the nginx rows\n%s", err, out)
		return ""
	}
	addr := freeAddr()
	render := exec.Command("sh", "deploy/nginx/render.sh")
	render.Env = append(os.Environ(), "SERVER_NAME=localhost", "LISTEN="+addr, "UPSTREAM="+upstream, "SSL_CERT="+cert, "SSL_KEY="+key, "ACCESS_LOG=/dev/null")
	site, err := render.Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "deploy/nginx/render.sh failed (%v): skipping the nginx rows\n", err)
		return ""
	}
	os.WriteFile(filepath.Join(dir, "site.conf"), site, 0o644)
	conf := fmt.Sprintf("worker_processes auto;\npid %[1]s/nginx.pid;\nerror_log %[1]s/logs/error.log warn;\nevents { worker_connections 512; }\nhttp {\n access_log off;\n client_body_temp_path %[1]s/tmp/body;\n proxy_temp_path %[1]s/tmp/proxy;\n fastcgi_temp_path %[1]s/tmp/fastcgi;\n uwsgi_temp_path %[1]s/tmp/uwsgi;\n scgi_temp_path %[1]s/tmp/scgi;\n include %[1]s/site.conf;\n}\n", dir)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644)
	if _, err := start("nginx", nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off;"); err != nil {
		return ""
	}
	url := "https://" + addr
	for i := 0; i < 100; i++ {
		if resp, err := tlsClient.Get(url + "/_health/ping"); err == nil {
			resp.Body.Close()
			return url
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintln(os.Stderr, "nginx did not come up: skipping the nginx rows")
	return ""
}

type minioSrv struct {
	addr   string
	pid    int
	client *minio.Client
}

// startMinIO starts the MinIO server built by scripts/setup.sh; nil when
// it is not there.
func startMinIO(work string, start starter) *minioSrv {
	bin := filepath.Join(".cache", "bin", "minio")
	if _, err := os.Stat(bin); err != nil {
		fmt.Fprintln(os.Stderr, "no .cache/bin/minio (scripts/setup.sh test builds it): skipping the MinIO rows")
		return nil
	}
	addr := freeAddr()
	os.Setenv("MINIO_ROOT_USER", "keepbench")
	os.Setenv("MINIO_ROOT_PASSWORD", "keepbench-secret")
	os.Setenv("MINIO_BROWSER", "off")
	os.Setenv("MINIO_UPDATE", "off")
	p, err := start("minio", bin, "server", "--quiet", "--address", addr, filepath.Join(work, "minio-data"))
	if err != nil {
		return nil
	}
	for i := 0; i < 200; i++ {
		if resp, err := http.Get("http://" + addr + "/minio/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cl, err := minio.New(addr, &minio.Options{Creds: credentials.NewStaticV4("keepbench", "keepbench-secret", ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		return nil
	}
	for _, b := range []string{"keep", "raw"} {
		if err := cl.MakeBucket(context.Background(), b, minio.MakeBucketOptions{}); err != nil {
			fmt.Fprintf(os.Stderr, "MinIO bucket: %v: skipping the MinIO rows\n", err)
			return nil
		}
	}
	return &minioSrv{addr: addr, pid: p.cmd.Process.Pid, client: cl}
}

func (m *minioSrv) put(key string, data []byte) (int64, error) {
	_, err := m.client.PutObject(context.Background(), "raw", key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{DisableMultipart: true})
	return int64(len(data)), err
}

func (m *minioSrv) get(key string) (int64, error) {
	o, err := m.client.GetObject(context.Background(), "raw", key, minio.GetObjectOptions{})
	if err != nil {
		return 0, err
	}
	defer o.Close()
	return io.Copy(io.Discard, o)
}

// startS3Store starts a keepstore whose one volume is the MinIO bucket "keep".
func startS3Store(work, keyFile, adminFile string, m *minioSrv, start starter, pids map[string]int) (string, error) {
	acc := filepath.Join(work, "s3.access")
	sec := filepath.Join(work, "s3.secret")
	os.WriteFile(acc, []byte("keepbench"), 0o600)
	os.WriteFile(sec, []byte("keepbench-secret"), 0o600)
	addr := freeAddr()
	cfg := fmt.Sprintf("listen: %s\nblob_signing_key_file: %s\nadmin_token_file: %s\nlog_level: warn\ntrash_lifetime: 0s\nvolumes:\n  - driver: S3\n    s3:\n      endpoint: %s\n      bucket: keep\n      path_style: true\n      access_key_file: %s\n      secret_key_file: %s\n", addr, keyFile, adminFile, m.addr, acc, sec)
	path := filepath.Join(work, "keepstore-s3.yml")
	os.WriteFile(path, []byte(cfg), 0o600)
	p, err := start("keepstore-s3", filepath.Join(*binDir, "keepstore"), "-config", path)
	if err != nil {
		return "", err
	}
	pids["keepstore-s3"] = p.cmd.Process.Pid
	url := "http://" + addr
	return url, waitUp(url + "/_health/ping")
}
