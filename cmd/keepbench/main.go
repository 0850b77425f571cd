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
	// measureOps runs conc workers, each calling fn rounds times.
	measureOps := func(target, op string, conc int, fn func(w int) (int64, error)) row {
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
		r := row{target: target, op: op, conc: conc, mbps: float64(bytesMoved.Load()) / el / (1 << 20), peak: peak, errs: errs.Load()}
		fmt.Fprintf(os.Stderr, "%-34s %-4s c=%d %8.1f MiB/s errors=%d\n", target, op, conc, r.mbps, r.errs)
		return r
	}
	measure := func(target, op, base string, replicas, conc int) row {
		cl := client
		if strings.HasPrefix(base, "https:") {
			cl = tlsClient
		}
		return measureOps(target, op, conc, func(w int) (int64, error) {
			var req *http.Request
			if op == "PUT" {
				req, _ = http.NewRequest("PUT", base+"/"+hashes[w], bytes.NewReader(blocks[w]))
				req.Header.Set(keepwire.DesiredReplicas, strconv.Itoa(replicas))
			} else {
				signedMu.Lock()
				loc := signed[w]
				signedMu.Unlock()
				req, _ = http.NewRequest("GET", base+"/"+loc, nil)
			}
			req.Header.Set("Authorization", "Bearer "+token)
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
				if base != sinkURL {
					signedMu.Lock()
					signed[w] = strings.TrimSpace(string(body))
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
	proxy, store0 := "http://"+proxyAddr, storeURLs[0]
	for _, c := range concs {
		rows = append(rows,
			measure("baseline (MD5 sink)", "PUT", sinkURL, 1, c),
			measure("keepstore direct", "PUT", store0, 1, c),
			measure("keepproxy replicas=1", "PUT", proxy, 1, c),
			measure("keepproxy replicas=2", "PUT", proxy, 2, c),
			// The ceiling for replicas=2 on this machine: each block written to
			// two keepstores at once by the client itself, no proxy.
			measureOps("2 keepstores direct, in parallel", "PUT", c, func(w int) (int64, error) {
				errs := make(chan error, 2)
				for _, st := range storeURLs[:2] {
					go func(st string) {
						req, _ := http.NewRequest("PUT", st+"/"+hashes[w], bytes.NewReader(blocks[w]))
						req.Header.Set("Authorization", "Bearer "+token)
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
			measure("baseline (RAM)", "GET", sinkURL, 1, c),
			measure("keepstore direct", "GET", store0, 1, c),
			measure("keepproxy", "GET", proxy, 1, c),
		)
		if nginxURL != "" {
			rows = append(rows,
				measure("nginx TLS → keepproxy replicas=2", "PUT", nginxURL, 2, c),
				measure("nginx TLS → keepproxy", "GET", nginxURL, 1, c))
		}
		if mio != nil && c <= 4 {
			rows = append(rows,
				measure("keepstore on MinIO (S3 volume)", "PUT", s3Store, 1, c),
				measure("keepstore on MinIO (S3 volume)", "GET", s3Store, 1, c),
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
	b.WriteString("| target | op | concurrency | MiB/s | ratio | peak RSS above idle (MiB) | errors |\n|---|---|---:|---:|---:|---|---:|\n")
	for _, r := range rows {
		base := find("baseline (MD5 sink)", "PUT", r.conc)
		if r.op == "GET" {
			base = find("keepstore direct", "GET", r.conc)
		}
		switch {
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
		for _, n := range []string{"keepproxy", "keepstore0", "keepstore1", "keepstore2", "keepstore-s3"} {
			if _, ok := pids[n]; !ok {
				continue
			}
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
	fmt.Fprintf(&b, "\nFor scale: writing each block to two keepstores at once straight from the client (no proxy) reaches %.0f MiB/s at concurrency 4, i.e. %.0f%% of the MD5 sink; keepproxy replicas=2 reaches %.0f%% of that ceiling.\n",
		find("2 keepstores direct, in parallel", "PUT", 4), 100*find("2 keepstores direct, in parallel", "PUT", 4)/find("baseline (MD5 sink)", "PUT", 4),
		100*find("keepproxy replicas=2", "PUT", 4)/find("2 keepstores direct, in parallel", "PUT", 4))
	fmt.Fprintf(&b, "\nTargets: proxy PUT replicas=2 c=4 vs MD5 sink = **%.0f%%** (target ≥ 50%%); proxy GET c=4 vs direct keepstore GET = **%.0f%%** (target ≥ 80%%); proxy peak RSS above idle under 8 concurrent 64 MiB PUTs = **%.0f MiB** (target ≤ 64 MiB).\n", 100*put2, 100*get4, float64(proxyPeak)/(1<<20))
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
	fmt.Print(b.String())
	return os.WriteFile(*outPath, []byte(b.String()), 0o644)
}

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
