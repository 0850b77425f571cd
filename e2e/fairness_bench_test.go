package e2e

// Fairness under load, measured from outside on a real keepproxy with
// three keepstores: one token attacks (dripping uploads, GETs whose bodies
// are never read), another token moves 64 MiB blocks at c=4, and its
// throughput is compared with the same transfers without the attack,
// alternating in one run. Run by make bench:
//
//	go test -run XXX -bench Fairness -benchtime 1x ./e2e/
//
// With KEEPGATE_FAIRNESS_OUT=file the figures are also written there as a
// Markdown table.

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

const (
	fairVictim   = "fairness-victim-token-0123456789"
	fairAttacker = "fairness-attacker-token-0123456789"
	fairBlock    = 64 << 20
	fairWorkers  = 4
	fairRounds   = 2 // blocks per worker per measurement
	fairTrials   = 3 // alone/attacked pairs, alternating
)

func BenchmarkFairness(b *testing.B) {
	c := testenv.StartCluster(b, testenv.ClusterOptions{})
	// Two more principals; the token file is reloaded on SIGHUP.
	tokens, err := os.ReadFile(c.TokenFile)
	if err != nil {
		b.Fatal(err)
	}
	extra := fmt.Sprintf("  - name: victim\n    token: %s\n    scopes: [read, write]\n  - name: attacker\n    token: %s\n    scopes: [read, write]\n", fairVictim, fairAttacker)
	if err := os.WriteFile(c.TokenFile, append(tokens, extra...), 0o600); err != nil {
		b.Fatal(err)
	}
	c.Proxy.Signal(sighup)
	waitToken(b, c.ProxyURL, fairVictim)
	waitToken(b, c.ProxyURL, fairAttacker)

	blocks := make([][]byte, fairWorkers*fairRounds)
	for i := range blocks {
		blocks[i] = make([]byte, fairBlock)
		r := rand.New(rand.NewPCG(uint64(i), 7))
		for j := 0; j < len(blocks[i]); j += 8 {
			v := r.Uint64()
			for k := 0; k < 8; k++ {
				blocks[i][j+k] = byte(v >> (8 * k))
			}
		}
	}
	locs := make([]string, len(blocks))
	putAll := func() (float64, int) { // MiB/s and errors
		return transfer(len(blocks), func(i int) (int64, error) {
			loc, err := fairPut(c.ProxyURL, fairVictim, blocks[i])
			if err == nil {
				locs[i] = loc
			}
			return fairBlock, err
		})
	}
	getAll := func() (float64, int) {
		return transfer(len(blocks), func(i int) (int64, error) { return fairGet(c.ProxyURL, fairVictim, locs[i]) })
	}
	if _, errs := putAll(); errs != 0 { // warm up; locators for the GETs
		b.Fatalf("warm-up PUTs: %d errors", errs)
	}

	drip := func() func() { // 4 dripping POSTs and 62 dripping PUTs
		var conns []net.Conn
		for i := 0; i < 66; i++ {
			conn, err := net.Dial("tcp", c.ProxyAddr)
			if err != nil {
				b.Fatal(err)
			}
			path := "/"
			method := "POST"
			if i >= 4 {
				method = "PUT"
				sum := md5.Sum([]byte(fmt.Sprint("drip", i, time.Now().UnixNano())))
				path = "/" + hex.EncodeToString(sum[:])
			}
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", method, path, fairAttacker, fairBlock)
			conns = append(conns, conn)
		}
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					for _, conn := range conns {
						conn.Write([]byte{'x'})
					}
				}
			}
		}()
		time.Sleep(500 * time.Millisecond)
		return func() {
			close(stop)
			<-done
			for _, conn := range conns {
				conn.Close()
			}
		}
	}
	unread := func() func() { // 300 GETs whose bodies are never read
		var conns []net.Conn
		for i := 0; i < 300; i++ {
			conn, err := net.Dial("tcp", c.ProxyAddr)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(conn, "GET /%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", locs[i%len(locs)], fairAttacker)
			conns = append(conns, conn)
		}
		// Past the moment (13.5 s) when, before per-principal store slots
		// and GET copy budgets, other clients' GETs began to fail.
		time.Sleep(15 * time.Second)
		return func() {
			for _, conn := range conns {
				conn.Close()
			}
		}
	}

	type row struct {
		name           string
		alone, attack  []float64
		errsA, errsB   int
		ratio, minimum float64
	}
	measure := func(name string, op func() (float64, int), attack func() func()) row {
		r := row{name: name}
		for i := 0; i < fairTrials; i++ {
			v, e := op()
			r.alone, r.errsA = append(r.alone, v), r.errsA+e
			stop := attack()
			v, e = op()
			stop()
			r.attack, r.errsB = append(r.attack, v), r.errsB+e
			time.Sleep(time.Second) // let the proxy drop the attacker's requests
		}
		r.ratio = median(r.attack) / median(r.alone)
		return r
	}
	b.ResetTimer()
	rows := []row{
		measure("64 MiB PUT c=4 (replicas 2) with 4 dripping POSTs + 62 dripping PUTs from another token", putAll, drip),
		measure("64 MiB GET c=4 with 300 unread GETs from another token", getAll, unread),
	}
	b.StopTimer()
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s UTC by `go test -bench Fairness ./e2e/`: keepproxy + 3 keepstores on loopback, one token's transfers alone and while another token attacks, alternating %d times; medians.\n\n", time.Now().UTC().Format("2006-01-02 15:04"), fairTrials)
	md.WriteString("| victim's transfers | alone MiB/s | attacked MiB/s | ratio | errors alone / attacked |\n|---|---:|---:|---:|---:|\n")
	for i, r := range rows {
		fmt.Fprintf(&md, "| %s | %.1f | %.1f | %.2f× | %d / %d |\n", r.name, median(r.alone), median(r.attack), r.ratio, r.errsA, r.errsB)
		b.ReportMetric(r.ratio, fmt.Sprintf("ratio%d", i))
		if r.errsB > r.errsA {
			b.Errorf("%s: %d errors under attack", r.name, r.errsB)
		}
	}
	b.Log("\n" + md.String())
	if out := os.Getenv("KEEPGATE_FAIRNESS_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// transfer runs n operations on fairWorkers workers; MiB/s and errors.
func transfer(n int, op func(i int) (int64, error)) (float64, int) {
	var mu sync.Mutex
	var bytes int64
	errs := 0
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < fairWorkers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				k, err := op(i)
				mu.Lock()
				if err != nil {
					errs++
				} else {
					bytes += k
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return float64(bytes) / (1 << 20) / time.Since(start).Seconds(), errs
}

var fairClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: fairWorkers}}

func fairPut(base, token string, data []byte) (string, error) {
	sum := md5.Sum(data)
	req, _ := http.NewRequest("PUT", base+"/"+hex.EncodeToString(sum[:]), bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := fairClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("PUT: %d %s", resp.StatusCode, body)
	}
	return strings.TrimSpace(string(body)), nil
}

func fairGet(base, token, loc string) (int64, error) {
	req, _ := http.NewRequest("GET", base+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := fairClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, bufio.NewReaderSize(resp.Body, 1<<20))
	if err == nil && (resp.StatusCode != 200 || n != fairBlock) {
		err = fmt.Errorf("GET: %d, %d bytes", resp.StatusCode, n)
	}
	return n, err
}

// waitToken waits until keepproxy accepts token (after a reload).
func waitToken(t testing.TB, base, token string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequest("HEAD", base+"/d41d8cd98f00b204e9800998ecf8427e+0", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("keepproxy did not accept the new token %q after SIGHUP", token[:10])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func median(v []float64) float64 {
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[len(s)/2]
}
