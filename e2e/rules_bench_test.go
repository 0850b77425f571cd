package e2e

// What forwarding rules and upstream storages cost, measured from outside
// on real processes, alternating in one run: the same 64 MiB transfers at
// c=4 through a keepproxy without rules and through one with two rules
// (by Host), and through a keepgate whose storage is an upstream keepgate
// vs straight to that upstream. Run by make bench:
//
//	go test -run XXX -bench Rules -benchtime 1x ./e2e/
//
// With KEEPGATE_RULES_OUT=file the figures are also written there.

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// hostClient sends every request with Host set to host.
func hostPut(base, host, token string, data []byte) (string, error) {
	sum := md5.Sum(data)
	req, _ := http.NewRequest("PUT", base+"/"+hex.EncodeToString(sum[:]), bytes.NewReader(data))
	req.Host = host
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

func hostGet(base, host, token, loc string) (int64, error) {
	req, _ := http.NewRequest("GET", base+"/"+loc, nil)
	req.Host = host
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := fairClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET: %d", resp.StatusCode)
	}
	return n, err
}

func BenchmarkRules(b *testing.B) {
	plain := testenv.StartCluster(b, testenv.ClusterOptions{})
	base, err := os.ReadFile(plain.ProxyCfg)
	if err != nil {
		b.Fatal(err)
	}
	// A second keepproxy on the same stores, with two rules.
	addr := testenv.FreeAddr(b)
	cfg := strings.Replace(string(base), "listen: "+plain.ProxyAddr, "listen: "+addr, 1) +
		"rules:\n  - hosts: [keep.a.test]\n    storages: [default]\n  - hosts: [\"*.b.test\"]\n    storages: [default]\n"
	p := testenv.Start(b, testenv.Build(b, "keepproxy"), []string{"-config", testenv.WriteFile(b, plain.Dir, "keepproxy-rules.yml", cfg)})
	testenv.WaitHTTP(b, "http://"+addr+"/_health/ping", 0, p)
	rulesURL := "http://" + addr
	// A keepgate whose storage is the first cluster's keepproxy (squashed).
	tok := testenv.WriteSecret(b, b.TempDir(), "up.token", testenv.TokenRW)
	down := testenv.StartCluster(b, testenv.ClusterOptions{Stores: 1, ProxyExtra: fmt.Sprintf(
		"storages:\n  up: {upstream: %s, identity: squashed, token_file: %s}\ndefault_storage: up\n", plain.ProxyURL, tok)})

	blocks := make([][]byte, fairWorkers*fairRounds)
	for i := range blocks {
		blocks[i], _ = volumetest.Block(uint64(50000+i), fairBlock)
	}
	type target struct {
		url, host string
		locs      []string
	}
	puts := func(tg *target) func() (float64, int) {
		return func() (float64, int) {
			tg.locs = make([]string, len(blocks))
			return transfer(len(blocks), func(i int) (int64, error) {
				loc, err := hostPut(tg.url, tg.host, testenv.TokenRW, blocks[i])
				tg.locs[i] = loc
				return fairBlock, err
			})
		}
	}
	gets := func(tg *target) func() (float64, int) {
		return func() (float64, int) {
			return transfer(4*len(blocks), func(i int) (int64, error) {
				return hostGet(tg.url, tg.host, testenv.TokenRW, tg.locs[i%len(blocks)])
			})
		}
	}
	implicit := &target{url: plain.ProxyURL, host: plain.ProxyAddr}
	twoRules := &target{url: rulesURL, host: "x.b.test"}
	upstream := &target{url: down.ProxyURL, host: down.ProxyAddr}
	idlePlain, idleFront := vmRSS(b, plain.Proxy.Cmd.Process.Pid), vmRSS(b, down.Proxy.Cmd.Process.Pid)
	var md strings.Builder
	fmt.Fprintf(&md, "Measured %s UTC by `go test -bench Rules ./e2e/`: 64 MiB blocks at c=4 (8 PUTs replicas 2, 32 GETs a run), 5 alternating runs each, medians; all processes on loopback.\n\n", time.Now().UTC().Format("2006-01-02 15:04"))
	md.WriteString("| comparison | transfers | baseline MiB/s | measured MiB/s | ratio |\n|---|---|---:|---:|---:|\n")
	b.ResetTimer()
	for _, row := range []struct {
		name, op string
		base, on func() (float64, int)
	}{
		{"two rules (wildcard match) vs no rules", "PUT", puts(implicit), puts(twoRules)},
		{"two rules (wildcard match) vs no rules", "GET", gets(implicit), gets(twoRules)},
		{"through an upstream storage (keepgate → keepgate) vs straight to the upstream", "PUT", puts(implicit), puts(upstream)},
		{"through an upstream storage (keepgate → keepgate) vs straight to the upstream", "GET", gets(implicit), gets(upstream)},
	} {
		var a, o []float64
		for i := 0; i < 5; i++ {
			first, second := row.base, row.on
			if i%2 == 1 {
				first, second = row.on, row.base
			}
			v, e1 := first()
			w, e2 := second()
			if e1+e2 != 0 {
				b.Fatalf("%s %s: %d errors", row.name, row.op, e1+e2)
			}
			if i%2 == 1 {
				v, w = w, v
			}
			a, o = append(a, v), append(o, w)
		}
		fmt.Fprintf(&md, "| %s | %s | %.1f | %.1f | %.2f× |\n", row.name, row.op, median(a), median(o), median(o)/median(a))
	}
	b.StopTimer()
	fmt.Fprintf(&md, "\nProxy peak RSS above idle (VmHWM − VmRSS before the runs) after all of them: the upstream keepgate (straight rows, and behind the fronting one) %.1f MiB, the keepgate fronting it %.1f MiB (wave-1 bound: 64 MiB under 8 concurrent 64 MiB PUTs).\n",
		float64(vmHWM(b, plain.Proxy.Cmd.Process.Pid)-idlePlain)/1024, float64(vmHWM(b, down.Proxy.Cmd.Process.Pid)-idleFront)/1024)
	b.Log("\n" + md.String())
	if out := os.Getenv("KEEPGATE_RULES_OUT"); out != "" {
		if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
}
