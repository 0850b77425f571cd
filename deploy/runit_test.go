package deploy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// copyDir copies the shipped service directory src to dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, fi.Mode().Perm())
	})
	if err != nil {
		t.Fatal(err)
	}
}

var pidRe = regexp.MustCompile(`^run: [^:]+: \(pid (\d+)\)`)

func svPid(t *testing.T, sv, dir string) int {
	out, _ := exec.Command(sv, "status", dir).CombinedOutput()
	m := pidRe.FindSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func TestRunitSupervision(t *testing.T) {
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

	// A world-traversable work dir whose data and secrets belong to nobody.
	work, err := os.MkdirTemp("", "keepgate-runit-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	os.Chmod(work, 0o755)
	bin := filepath.Join(work, "bin")
	os.MkdirAll(bin, 0o755)
	for _, name := range []string{"keepproxy", "keepstore"} {
		b, _ := os.ReadFile(testenv.Build(t, name))
		os.WriteFile(filepath.Join(bin, name), b, 0o755)
	}
	data := filepath.Join(work, "data")
	etc := filepath.Join(work, "etc")
	os.MkdirAll(data, 0o700)
	os.MkdirAll(etc, 0o700)
	storeAddr, proxyAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	tokens := testenv.WriteSecret(t, etc, "tokens.yml", "tokens:\n  - name: a\n    token: runit-token-aaaaaaaa\n    scopes: [read, write]\n")
	key := testenv.WriteSecret(t, etc, "signing.key", testenv.SigningKey)
	testenv.WriteSecret(t, etc, "keepstore.yml", fmt.Sprintf("listen: %s\nblob_signing_key_file: %s\nvolumes:\n  - driver: Directory\n    directory:\n      root: %s\n      reserve: -1\n", storeAddr, key, data))
	testenv.WriteSecret(t, etc, "keepproxy.yml", fmt.Sprintf("listen: %s\ntoken_file: %s\ndefault_replicas: 1\nstores:\n  - url: http://%s\n", proxyAddr, tokens, storeAddr))
	for _, p := range []string{data, etc, filepath.Join(etc, "tokens.yml"), key, filepath.Join(etc, "keepstore.yml"), filepath.Join(etc, "keepproxy.yml")} {
		os.Chown(p, uid, gid)
	}

	svDir, serviceDir := filepath.Join(work, "sv"), filepath.Join(work, "service")
	os.MkdirAll(serviceDir, 0o755)
	for _, name := range []string{"keepproxy", "keepstore"} {
		d := filepath.Join(svDir, name)
		copyDir(t, filepath.Join(testenv.RepoRoot(), "deploy/runit", name), d)
		for k, v := range map[string]string{"KEEPGATE_BIN": bin, "KEEPGATE_CONFIG": filepath.Join(etc, name+".yml"), "KEEPGATE_USER": "nobody", "KEEPGATE_LOGDIR": filepath.Join(work, "log", name)} {
			os.WriteFile(filepath.Join(d, "env", k), []byte(v+"\n"), 0o644)
		}
	}
	rsd := testenv.Start(t, runsvdir, []string{"-P", serviceDir})
	t.Cleanup(func() {
		for _, name := range []string{"keepproxy", "keepstore"} {
			exec.Command(sv, "-w", "7", "force-stop", filepath.Join(serviceDir, name)).Run()
			exec.Command(sv, "exit", filepath.Join(serviceDir, name)).Run()
		}
		syscall.Kill(rsd.Cmd.Process.Pid, syscall.SIGHUP)
	})
	for _, name := range []string{"keepstore", "keepproxy"} {
		if err := os.Symlink(filepath.Join(svDir, name), filepath.Join(serviceDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	proxyURL := "http://" + proxyAddr
	waitServing := func(what string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			resp, err := http.Get(proxyURL + "/_health/ping")
			if err == nil {
				resp.Body.Close()
				resp2, err := http.Get("http://" + storeAddr + "/_health/ping")
				if err == nil {
					resp2.Body.Close()
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		logs, _ := exec.Command("sh", "-c", "cat "+work+"/log/*/current").CombinedOutput()
		t.Fatalf("%s: not serving within %s\n%s", what, within, logs)
	}
	waitServing("first start", 15*time.Second)

	put := func(token, body string) (int, string) {
		h := fmt.Sprintf("%x", md5sum([]byte(body)))
		req, _ := http.NewRequest("PUT", proxyURL+"/"+h, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	get := func(token, loc string) (int, string) {
		req, _ := http.NewRequest("GET", proxyURL+"/"+loc, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, loc := put("runit-token-aaaaaaaa", "supervised block\n")
	if code != 200 {
		t.Fatalf("PUT under runit: %d %s", code, loc)
	}
	// The services run as the unprivileged user.
	pid := svPid(t, sv, filepath.Join(serviceDir, "keepproxy"))
	if st, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Fatalf("keepproxy (pid %d) does not run as nobody", pid)
	}
	for _, name := range []string{"keepproxy", "keepstore"} {
		dir := filepath.Join(serviceDir, name)
		old := svPid(t, sv, dir)
		if old == 0 {
			t.Fatalf("%s not running", name)
		}
		syscall.Kill(old, syscall.SIGKILL)
		t0 := time.Now()
		waitServing(name+" after SIGKILL", 2*time.Second)
		if nw := svPid(t, sv, dir); nw == old || nw == 0 {
			t.Fatalf("%s: pid %d after kill of %d", name, nw, old)
		}
		t.Logf("%s back and serving %.0f ms after SIGKILL", name, time.Since(t0).Seconds()*1000)
		if code, body := get("runit-token-aaaaaaaa", loc); code != 200 || body != "supervised block\n" {
			t.Fatalf("after %s restart the block is gone: %d %q", name, code, body)
		}
	}
	// sv hup reloads the token file.
	os.WriteFile(filepath.Join(etc, "tokens.yml"), []byte("tokens:\n  - name: b\n    token: runit-token-bbbbbbbb\n    scopes: [read, write]\n"), 0o600)
	if out, err := exec.Command(sv, "hup", filepath.Join(serviceDir, "keepproxy")).CombinedOutput(); err != nil {
		t.Fatalf("sv hup: %v %s", err, out)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		if code, _ := put("runit-token-bbbbbbbb", "after hup\n"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("token file not reloaded by sv hup")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := put("runit-token-aaaaaaaa", "old token\n"); code != 403 {
		t.Fatalf("old token after reload: %d", code)
	}
	// svlogd collected the JSON logs.
	logs, _ := os.ReadFile(filepath.Join(work, "log", "keepproxy", "current"))
	if !bytes.Contains(logs, []byte(`"msg":"request"`)) {
		t.Fatalf("svlogd did not collect keepproxy's log:\n%s", logs)
	}
}
