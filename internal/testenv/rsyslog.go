package testenv

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Rsyslog is Debian's rsyslogd in the foreground with its own config: a
// TCP input on loopback (octet-counted or newline framing), a unix
// datagram socket, and local2 written raw, one record per line, to File.
type Rsyslog struct {
	Dir     string
	TCPAddr string // 127.0.0.1:port
	Socket  string // unix datagram socket (like /dev/log)
	File    string // local2.* records, "%rawmsg%" per line
	Proc    *Proc
}

// StartRsyslog starts rsyslogd; it is killed at cleanup.
func StartRsyslog(t testing.TB) *Rsyslog {
	t.Helper()
	return StartRsyslogOn(t, FreeAddr(t))
}

// StartRsyslogOn starts rsyslogd with its TCP input on addr.
func StartRsyslogOn(t testing.TB, addr string) *Rsyslog {
	t.Helper()
	bin := LookPath(t, "rsyslogd")
	// Unix socket paths are limited to 108 bytes; t.TempDir() can be long.
	dir, err := os.MkdirTemp("", "kgsyslog")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Mkdir(filepath.Join(dir, "work"), 0o700)
	r := &Rsyslog{Dir: dir, TCPAddr: addr, Socket: filepath.Join(dir, "log.sock"), File: filepath.Join(dir, "audit.log")}
	_, port, _ := strings.Cut(r.TCPAddr, ":")
	conf := fmt.Sprintf(`global(workDirectory="%[1]s/work" maxMessageSize="64k")
module(load="imuxsock" SysSock.Use="off")
input(type="imuxsock" Socket="%[2]s" CreatePath="on")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="%[3]s")
template(name="raw" type="string" string="%%rawmsg%%\n")
local2.* action(type="omfile" file="%[4]s" template="raw")
& stop
*.* action(type="omfile" file="%[1]s/other.log")
`, dir, r.Socket, port, r.File)
	cfg := WriteFile(t, dir, "rsyslog.conf", conf)
	r.Proc = Start(t, bin, []string{"-n", "-f", cfg, "-i", filepath.Join(dir, "rsyslogd.pid")})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(r.Socket); err == nil && canDial(r.TCPAddr) {
			return r
		}
		if r.Proc.Exited() || time.Now().After(deadline) {
			t.Fatalf("rsyslogd did not come up:\n%s", r.Proc.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop and Cont freeze and thaw rsyslogd (SIGSTOP / SIGCONT).
func (r *Rsyslog) Stop() { syscall.Kill(r.Proc.Cmd.Process.Pid, syscall.SIGSTOP) }
func (r *Rsyslog) Cont() { syscall.Kill(r.Proc.Cmd.Process.Pid, syscall.SIGCONT) }

// Lines returns the records written to File so far.
func (r *Rsyslog) Lines() []string {
	f, err := os.Open(r.File)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 128<<10), 128<<10)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// WaitLines waits until File holds at least n records (or d passes) and
// returns them.
func (r *Rsyslog) WaitLines(n int, d time.Duration) []string {
	deadline := time.Now().Add(d)
	for {
		l := r.Lines()
		if len(l) >= n || time.Now().After(deadline) {
			return l
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func canDial(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}
