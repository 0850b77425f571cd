package e2e

import (
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// TestTunnelThroughput is `make bench-tunnel`: 64 MiB PUTs and GETs through
// keepproxy to one keepstore, by three paths in the same run: keepproxy ->
// TCP -> keepstore (direct); keepproxy -> unix socket -> sshd -> keeptunnel
// -> keepstore; and the same through OpenSSH's own `ssh -R` instead of
// keeptunnel (with its default cipher, and with keeptunnel's). The median
// of 5 rounds, rounds interleaved, goes to $KEEPGATE_TUNNEL_BENCH_OUT
// (docs/tunnel-benchmarks.md). Skipped unless that variable is set.
func TestTunnelThroughput(t *testing.T) {
	out := os.Getenv("KEEPGATE_TUNNEL_BENCH_OUT")
	if out == "" {
		t.Skip("set KEEPGATE_TUNNEL_BENCH_OUT (make bench-tunnel)")
	}
	const size, rounds = 64 << 20, 5
	sshBin := testenv.LookPath(t, "ssh")
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{})
	store := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, NoProxy: true}).Stores[0]

	ktSock := sshd.Socket("keeptunnel.sock")
	cfg, _ := tunnelConfig(t, sshd, sshd.Addr, sshd.KnownHosts, sshd.ClientKey, fmt.Sprintf("  - name: ks\n    remote: %s\n    local: %s\n", ktSock, store.Addr), "")
	kt := testenv.Start(t, testenv.Build(t, "keeptunnel"), []string{"-config", cfg})
	_, port, _ := net.SplitHostPort(sshd.Addr)
	startSSH := func(sock string, extra ...string) *testenv.Proc {
		args := append([]string{"-N", "-o", "BatchMode=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3",
			"-o", "UserKnownHostsFile=" + sshd.KnownHosts, "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes", "-i", sshd.ClientKey, "-p", port}, extra...)
		args = append(args, "-R", sock+":"+store.Addr, sshd.User+"@127.0.0.1")
		return testenv.Start(t, sshBin, args)
	}
	osSock, gcmSock := sshd.Socket("openssh.sock"), sshd.Socket("openssh-gcm.sock")
	osProc := startSSH(osSock)
	gcmProc := startSSH(gcmSock, "-c", "aes128-gcm@openssh.com")
	deadline := time.Now().Add(20 * time.Second)
	for _, sock := range []string{ktSock, osSock, gcmSock} {
		for {
			if c, err := net.Dial("unix", sock); err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not served:\n%s\n%s\n%s", sock, kt.Output(), osProc.Output(), gcmProc.Output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	dir := t.TempDir()
	tokens := testenv.WriteFile(t, dir, "tokens.yml", fmt.Sprintf("tokens:\n  - name: rw\n    token: %s\n    scopes: [read, write]\n", testenv.TokenRW))
	type path struct {
		name, store, url string
		put, get         []time.Duration
	}
	paths := []*path{
		{name: "direct (keepproxy -> TCP -> keepstore)", store: store.URL},
		{name: "keeptunnel (x/crypto/ssh, aes128-gcm)", store: "http+unix://" + ktSock},
		{name: "OpenSSH ssh -R (default cipher, chacha20-poly1305)", store: "http+unix://" + osSock},
		{name: "OpenSSH ssh -R -c aes128-gcm@openssh.com", store: "http+unix://" + gcmSock},
	}
	for i, p := range paths {
		addr := testenv.FreeAddr(t)
		p.url = "http://" + addr
		c := testenv.WriteFile(t, dir, fmt.Sprintf("kp%d.yml", i), fmt.Sprintf("listen: %s\ntoken_file: %s\ndefault_replicas: 1\nstores:\n  - url: %s\n    uuid: zzzzz-bi6l4-bench0000000%03d\n", addr, tokens, p.store, i))
		proxy := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", c})
		testenv.WaitHTTP(t, p.url+"/_health/ping", 0, proxy)
	}

	block := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(block)
	client := &http.Client{Timeout: 2 * time.Minute}
	n := uint64(0)
	for round := 0; round < rounds; round++ {
		for _, p := range paths {
			n++
			binary.BigEndian.PutUint64(block, n) // a new block every time
			hash := fmt.Sprintf("%x", md5.Sum(block))
			req, _ := http.NewRequest("PUT", p.url+"/"+hash, bytes.NewReader(block))
			req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s PUT: %v", p.name, err)
			}
			loc, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			p.put = append(p.put, time.Since(t0))
			if resp.StatusCode != 200 {
				t.Fatalf("%s PUT: %d %s", p.name, resp.StatusCode, loc)
			}
			req, _ = http.NewRequest("GET", p.url+"/"+strings.TrimSpace(string(loc)), nil)
			req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
			t0 = time.Now()
			resp, err = client.Do(req)
			if err != nil {
				t.Fatalf("%s GET: %v", p.name, err)
			}
			got, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			p.get = append(p.get, time.Since(t0))
			if err != nil || resp.StatusCode != 200 || got != size {
				t.Fatalf("%s GET: %d, %d bytes, %v", p.name, resp.StatusCode, got, err)
			}
			os.Remove(store.BlockPath(hash))
		}
	}
	mibs := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	direct, ktp, ossh, gcm := paths[0], paths[1], paths[2], paths[3]
	var b strings.Builder
	sshVersion, _ := exec.Command(sshBin, "-V").CombinedOutput()
	fmt.Fprintf(&b, "# keeptunnel throughput\n\nWritten by `make bench-tunnel` (e2e.TestTunnelThroughput) on %s: one 64 MiB block per request, "+
		"PUT then GET through keepproxy to one keepstore (directory volume) on loopback, median of %d rounds, the paths interleaved in each round; "+
		"%d CPUs, %s, %s. The tunnel paths are keepproxy -> http+unix socket -> sshd (Debian's OpenSSH, the shipped deploy/sshd block) -> SSH over loopback -> client -> keepstore.\n\n",
		time.Now().UTC().Format("2006-01-02"), rounds, runtime.NumCPU(), runtime.Version(), strings.TrimSpace(string(sshVersion)))
	fmt.Fprintf(&b, "Everything shares the same 2 cores (keepproxy, sshd, the tunnel client, keepstore, this test), so the tunnel paths are CPU-bound and the ratios move by about ±0.2 from run to run: compare rows of one run, not runs.\n\n")
	fmt.Fprintf(&b, "| path | PUT MiB/s | GET MiB/s | PUT vs ssh -R | GET vs ssh -R | PUT vs direct | GET vs direct |\n|---|---|---|---|---|---|---|\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f |\n", p.name, mibs(medianDuration(p.put)), mibs(medianDuration(p.get)),
			medianDuration(ossh.put).Seconds()/medianDuration(p.put).Seconds(), medianDuration(ossh.get).Seconds()/medianDuration(p.get).Seconds(),
			medianDuration(direct.put).Seconds()/medianDuration(p.put).Seconds(), medianDuration(direct.get).Seconds()/medianDuration(p.get).Seconds())
	}
	// ratio is a's throughput over b's (b's time over a's), PUT and GET.
	ratio := func(a, b *path) (float64, float64) {
		return medianDuration(b.put).Seconds() / medianDuration(a.put).Seconds(), medianDuration(b.get).Seconds() / medianDuration(a.get).Seconds()
	}
	pr, gr := ratio(ktp, ossh)
	pg, gg := ratio(ktp, gcm)
	fmt.Fprintf(&b, "\nkeeptunnel / OpenSSH `ssh -R` (default cipher): PUT %.2f×, GET %.2f× (target ≥ 0.7×); with the same cipher (aes128-gcm): PUT %.2f×, GET %.2f×.\n", pr, gr, pg, gg)
	dp, dg := ratio(ktp, direct)
	fmt.Fprintf(&b, "keeptunnel / direct TCP (the tunnel's throughput as a ratio to direct): PUT %.2f×, GET %.2f×.\n\nAll times (seconds):\n\n", dp, dg)
	for _, p := range paths {
		fmt.Fprintf(&b, "- %s: PUT %v; GET %v\n", p.name, secs(p.put), secs(p.get))
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + b.String())
}

func secs(d []time.Duration) string {
	s := make([]string, len(d))
	for i, v := range d {
		s[i] = fmt.Sprintf("%.3f", v.Seconds())
	}
	return strings.Join(s, " ")
}
