package deploy

import (
	"bytes"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// deploy/runit/keeptunnel under a real runsvdir, as an unprivileged user,
// in front of a real sshd (the shipped deploy/sshd block) and keepproxy
// using the socket: after kill -9, runit restarts keeptunnel and GETs
// through keepproxy work again within seconds.
func TestRunitKeeptunnel(t *testing.T) {
	runsvdir := testenv.LookPath(t, "runsvdir")
	sv := testenv.LookPath(t, "sv")
	testenv.LookPath(t, "chpst")
	testenv.LookPath(t, "svlogd")
	if os.Geteuid() != 0 {
		testenv.Missing(t, "root (chpst -u needs it)")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		testenv.Missing(t, "user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	sshd := testenv.StartSSHD(t, testenv.SSHDOptions{})
	store := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, NoProxy: true}).Stores[0]

	work, err := os.MkdirTemp("", "keepgate-runit-tunnel-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	os.Chmod(work, 0o755)
	bin, etc := filepath.Join(work, "bin"), filepath.Join(work, "etc")
	os.MkdirAll(bin, 0o755)
	os.MkdirAll(etc, 0o700)
	b, _ := os.ReadFile(testenv.Build(t, "keeptunnel"))
	os.WriteFile(filepath.Join(bin, "keeptunnel"), b, 0o755)
	key, _ := os.ReadFile(sshd.ClientKey)
	kh, _ := os.ReadFile(sshd.KnownHosts)
	id := testenv.WriteSecret(t, etc, "id_ed25519", string(key))
	known := testenv.WriteSecret(t, etc, "known_hosts", string(kh))
	socket := sshd.Socket("ks.sock")
	health := testenv.FreeAddr(t)
	cfg := testenv.WriteSecret(t, etc, "keeptunnel.yml", fmt.Sprintf("server: %s\nuser: %s\nidentity_file: %s\nknown_hosts_file: %s\nforwards:\n  - name: ks\n    remote: %s\n    local: %s\nhealth_listen: %s\n",
		sshd.Addr, sshd.User, id, known, socket, store.Addr, health))
	for _, p := range []string{etc, id, known, cfg} {
		os.Chown(p, uid, gid)
	}

	svDir, serviceDir := filepath.Join(work, "sv"), filepath.Join(work, "service")
	os.MkdirAll(serviceDir, 0o755)
	d := filepath.Join(svDir, "keeptunnel")
	copyDir(t, filepath.Join(testenv.RepoRoot(), "deploy/runit/keeptunnel"), d)
	for k, v := range map[string]string{"KEEPGATE_BIN": bin, "KEEPGATE_CONFIG": cfg, "KEEPGATE_USER": "nobody", "KEEPGATE_LOGDIR": filepath.Join(work, "log")} {
		os.WriteFile(filepath.Join(d, "env", k), []byte(v+"\n"), 0o644)
	}
	rsd := testenv.Start(t, runsvdir, []string{"-P", serviceDir})
	t.Cleanup(func() {
		exec.Command(sv, "-w", "7", "force-stop", filepath.Join(serviceDir, "keeptunnel")).Run()
		exec.Command(sv, "exit", filepath.Join(serviceDir, "keeptunnel")).Run()
		syscall.Kill(rsd.Cmd.Process.Pid, syscall.SIGHUP)
	})
	if err := os.Symlink(d, filepath.Join(serviceDir, "keeptunnel")); err != nil {
		t.Fatal(err)
	}

	// keepproxy with the store behind the tunnel.
	tokens := testenv.WriteFile(t, t.TempDir(), "tokens.yml", "tokens:\n  - name: a\n    token: runit-token-aaaaaaaa\n    scopes: [read, write]\n")
	proxyAddr := testenv.FreeAddr(t)
	pcfg := testenv.WriteFile(t, t.TempDir(), "keepproxy.yml", fmt.Sprintf("listen: %s\ntoken_file: %s\ndefault_replicas: 1\nstores:\n  - url: http+unix://%s\n", proxyAddr, tokens, socket))
	proxy := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", pcfg})
	testenv.WaitHTTP(t, "http://"+proxyAddr+"/_health/ping", 0, proxy)
	client := &http.Client{Timeout: 1500 * time.Millisecond}
	do := func(method, path string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, "http://"+proxyAddr+path, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer runit-token-aaaaaaaa")
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	body := []byte("supervised tunnel block\n")
	var loc string
	until := func(what string, within time.Duration) time.Duration {
		t.Helper()
		t0 := time.Now()
		for time.Since(t0) < within {
			if loc == "" {
				if code, l := do("PUT", fmt.Sprintf("/%x", md5.Sum(body)), body); code == 200 {
					loc = l
				}
			}
			if loc != "" {
				if code, got := do("GET", "/"+loc, nil); code == 200 && got == strings.TrimSpace(string(body)) {
					return time.Since(t0)
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		logs, _ := os.ReadFile(filepath.Join(work, "log", "current"))
		t.Fatalf("%s: no GET through the tunnel within %v\n%s\nsshd:\n%s", what, within, logs, sshd.Log())
		return 0
	}
	until("first start", 20*time.Second)
	dir := filepath.Join(serviceDir, "keeptunnel")
	pid := svPid(t, sv, dir)
	if st, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Fatalf("keeptunnel (pid %d) does not run as nobody", pid)
	}
	var times []time.Duration
	for i := 0; i < 3; i++ {
		old := svPid(t, sv, dir)
		syscall.Kill(old, syscall.SIGKILL)
		took := until("after kill -9", 15*time.Second)
		if nw := svPid(t, sv, dir); nw == old || nw == 0 {
			t.Fatalf("pid %d after kill of %d", nw, old)
		}
		times = append(times, took)
		time.Sleep(1100 * time.Millisecond) // runsv restarts at most once a second
	}
	t.Logf("kill -9 of keeptunnel under runit: GET through keepproxy succeeded again after %v", times)
	logs, _ := os.ReadFile(filepath.Join(work, "log", "current"))
	if !bytes.Contains(logs, []byte(`"msg":"tunnel up"`)) {
		t.Fatalf("svlogd did not collect keeptunnel's log:\n%s", logs)
	}
}
