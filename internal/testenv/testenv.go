// Package testenv helps tests start real programs (our own binaries, MinIO,
// nginx, runsvdir, Chromium) on loopback. A missing external component
// skips the test, except under CI=true, where it fails it.
package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// InCI reports whether CI=true is set.
func InCI() bool { return os.Getenv("CI") == "true" }

var rootOnce sync.Once
var root string

// RepoRoot is the directory holding go.mod.
func RepoRoot() string {
	rootOnce.Do(func() {
		d, _ := os.Getwd()
		for d != "/" {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				root = d
				return
			}
			d = filepath.Dir(d)
		}
		panic("testenv: go.mod not found")
	})
	return root
}

// Missing skips the test (outside CI) or fails it (CI=true).
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("required component missing under CI=true: %s (run scripts/setup.sh test)", msg)
	}
	t.Skipf("skipping: %s (run scripts/setup.sh test)", msg)
}

// LookPath finds an external program, also in /usr/sbin and the repo's
// .cache/bin; a missing one skips or fails the test (see Missing).
func LookPath(t testing.TB, name string) string {
	t.Helper()
	for _, p := range []string{filepath.Join(RepoRoot(), ".cache", "bin", name), "/usr/sbin/" + name, "/usr/bin/" + name} {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Missing(t, "%s not found", name)
	return ""
}

var buildMu sync.Mutex
var built = map[string]string{}

// Build compiles one of our commands (e.g. "keepstore" for ./cmd/keepstore)
// once per test process and returns the binary's path.
func Build(t testing.TB, cmd string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[cmd]; ok {
		return p
	}
	dir := filepath.Join(RepoRoot(), ".cache", "testbin")
	os.MkdirAll(dir, 0o755)
	tmp, err := os.CreateTemp(dir, cmd+".tmp*")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	c := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/"+cmd)
	c.Dir = RepoRoot()
	c.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
	if out, err := c.CombinedOutput(); err != nil {
		os.Remove(tmp.Name())
		t.Fatalf("go build ./cmd/%s: %v\n%s", cmd, err, out)
	}
	final := filepath.Join(dir, fmt.Sprintf("%s-%d", cmd, os.Getpid()))
	if err := os.Rename(tmp.Name(), final); err != nil {
		t.Fatal(err)
	}
	built[cmd] = final
	return final
}

// FreeAddr returns a currently unused 127.0.0.1:port.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proc is a started program whose output goes to a log file.
type Proc struct {
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
	err  error
}

// Start runs bin with args and extra environment, logging to a file in
// t.TempDir(); the process is killed at cleanup.
func Start(t testing.TB, bin string, args []string, env ...string) *Proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), filepath.Base(bin)+"-*.log")
	if err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, args...)
	c.Env = append(os.Environ(), env...)
	c.Stdout, c.Stderr = logf, logf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &Proc{Cmd: c, Log: logf.Name(), done: make(chan struct{})}
	go func() { p.err = c.Wait(); logf.Close(); close(p.done) }()
	t.Cleanup(func() { p.Kill() })
	return p
}

// Kill sends SIGKILL to the process group and waits.
func (p *Proc) Kill() {
	if p.Cmd.Process != nil {
		syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Wait waits up to d for the process to exit and returns its error.
func (p *Proc) Wait(d time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(d):
		return nil, false
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns the log so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// WaitHTTP polls url until it answers with any status (or want, if non-zero).
func WaitHTTP(t testing.TB, url string, want int, p *Proc) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			t.Fatalf("process exited before serving %s:\n%s", url, p.Output())
		}
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if want == 0 || resp.StatusCode == want {
				return
			}
		}
		time.Sleep(30 * time.Millisecond)
	}
	out := ""
	if p != nil {
		out = p.Output()
	}
	t.Fatalf("%s did not come up in 20s\n%s", url, out)
}

// WriteFile writes content to dir/name and returns the path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Contains reports whether the log of p contains s.
func (p *Proc) Contains(s string) bool { return strings.Contains(p.Output(), s) }
