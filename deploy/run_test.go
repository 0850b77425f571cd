package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

// startRun runs scripts/run.sh (make run's cluster) with private ports and
// var dir, and waits until it printed its banner.
func startRun(t *testing.T, varDir, bin string, ports []string) (*testenv.Proc, string) {
	t.Helper()
	p := testenv.Start(t, "bash", []string{filepath.Join(testenv.RepoRoot(), "scripts/run.sh")},
		"KEEPGATE_VAR="+varDir, "KEEPGATE_BIN="+bin,
		"PROXY_PORT="+ports[0], "STORE_PORTS="+ports[1]+" "+ports[2], "TLS_PORT="+ports[3], "ADMIN_PORT="+ports[4])
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(varDir, "ready")); err == nil {
			return p, p.Output()
		}
		if p.Exited() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("make run's cluster did not come up:\n%s", p.Output())
	return nil, ""
}

func TestMakeRunCluster(t *testing.T) {
	testenv.LookPath(t, "nginx")
	testenv.LookPath(t, "openssl")
	testenv.LookPath(t, "curl")
	bin := t.TempDir()
	for _, name := range []string{"keepproxy", "keepstore", "keep", "keepgate"} {
		os.Symlink(testenv.Build(t, name), filepath.Join(bin, name))
	}
	varDir := t.TempDir()
	var ports []string
	for i := 0; i < 5; i++ {
		a := testenv.FreeAddr(t)
		ports = append(ports, a[strings.LastIndexByte(a, ':')+1:])
	}
	p, out := startRun(t, varDir, bin, ports)
	if !strings.Contains(out, "https://127.0.0.1:"+ports[3]) || !strings.Contains(out, "token") {
		t.Fatalf("banner lacks the TLS URL or token:\n%s", out)
	}
	_, example, ok := strings.Cut(out, "Example — put a block and get it back:\n")
	if !ok {
		t.Fatalf("no example printed:\n%s", out)
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", example)
	res, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(res, []byte("stored 6f09f2b353b6d63069f770b90e2b112c+11+A")) || !bytes.Contains(res, []byte("hello keep\n")) ||
		!bytes.Contains(res, []byte("keepproxy.example.yml")) || !bytes.Contains(res, []byte("created access key")) ||
		!bytes.Contains(res, []byte("demo-key")) || !bytes.Contains(res, []byte("+A")) {
		t.Fatalf("the printed example failed: %v\n%s\n--- example:\n%s", err, res, example)
	}
	loc := strings.TrimSpace(strings.TrimPrefix(strings.Split(string(res), "\n")[0], "stored "))

	// Ctrl-C stops everything cleanly.
	p.Signal(syscall.SIGINT)
	if _, exited := p.Wait(10 * time.Second); !exited {
		t.Fatalf("make run did not stop on Ctrl-C:\n%s", p.Output())
	}
	for _, port := range ports[:3] {
		if _, err := exec.Command("curl", "-s", "http://127.0.0.1:"+port+"/").CombinedOutput(); err == nil {
			t.Fatalf("port %s still served after Ctrl-C", port)
		}
	}
	// Running it again reuses the data (and the token).
	_, out2 := startRun(t, varDir, bin, ports)
	token := ""
	for _, line := range strings.Split(out2, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "token" {
			token = f[1]
		}
	}
	res, err = exec.Command("curl", "-sSk", "-H", "Authorization: Bearer "+token, fmt.Sprintf("https://127.0.0.1:%s/%s", ports[3], loc)).CombinedOutput()
	if err != nil || string(res) != "hello keep\n" {
		t.Fatalf("block stored by the first run not readable after restart: %v %q", err, res)
	}
}
