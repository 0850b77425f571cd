package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SSHDUser is the tunnel account the test sshd admits when the tests run
// as root (created if missing, as deploy/sshd describes). As another user,
// sshd can only log that user in, so the tests use it.
const SSHDUser = "kgtunnel"

// SSHD is Debian's OpenSSH sshd on a loopback port with its own host key,
// its own authorized keys file and the shipped deploy/sshd block, started
// for a test.
type SSHD struct {
	Dir        string // world-traversable work directory
	Addr       string // 127.0.0.1:port
	User       string // the tunnel account
	HostKey    string // private host key
	ClientKey  string // the tunnel's private key (mode 0600)
	ClientPub  string // "ssh-ed25519 AAAA..."
	KnownHosts string // pins Addr's host key
	SocketDir  string // owned by User: where forwards may bind
	Config     string
	Proc       *Proc
	bin        string
	t          testing.TB
}

// SSHDOptions tune StartSSHD.
type SSHDOptions struct {
	// KeyOptions prefixes the key's authorized_keys line; default the
	// shipped "restrict,port-forwarding".
	KeyOptions string
	// Match are sshd_config lines for the tunnel account that take
	// precedence over the shipped block (e.g. "ClientAliveInterval 2",
	// "PermitListen 127.0.0.1:15000").
	Match []string
}

// StartSSHD renders deploy/sshd/keepgate-tunnel.conf for a fresh sshd and
// starts it; it is killed at cleanup. A missing sshd or ssh-keygen skips
// the test, or fails it under CI=true.
func StartSSHD(t testing.TB, o SSHDOptions) *SSHD {
	t.Helper()
	bin := LookPath(t, "sshd")
	keygen := LookPath(t, "ssh-keygen")
	s := &SSHD{bin: bin, t: t}
	s.User = sshdAccount(t)
	dir, err := os.MkdirTemp("", "keepgate-sshd-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	s.Dir = dir
	if os.Geteuid() == 0 {
		// "Missing privilege separation directory: /run/sshd"
		os.MkdirAll("/run/sshd", 0o755)
	}
	s.HostKey, s.ClientKey = filepath.Join(dir, "host_ed25519"), filepath.Join(dir, "client_ed25519")
	for _, k := range []string{s.HostKey, s.ClientKey} {
		if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "keepgate-test", "-f", k).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	s.ClientPub = strings.TrimSpace(readFile(t, s.ClientKey+".pub"))
	keyOpts := o.KeyOptions
	if keyOpts == "" {
		keyOpts = "restrict,port-forwarding"
	}
	keys := filepath.Join(dir, "keys")
	os.MkdirAll(keys, 0o755)
	if err := os.WriteFile(filepath.Join(keys, s.User), []byte(keyOpts+" "+s.ClientPub+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	s.SocketDir = filepath.Join(dir, "tunnels")
	os.MkdirAll(s.SocketDir, 0o755)
	if u, err := user.Lookup(s.User); err == nil && os.Geteuid() == 0 {
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chown(s.SocketDir, uid, gid)
	}
	s.Addr = FreeAddr(t)
	_, port, _ := net.SplitHostPort(s.Addr)
	hostPub := strings.Fields(readFile(t, s.HostKey+".pub"))
	s.KnownHosts = WriteFile(t, dir, "known_hosts", fmt.Sprintf("[127.0.0.1]:%s %s %s\n", port, hostPub[0], hostPub[1]))

	shipped := readFile(t, filepath.Join(RepoRoot(), "deploy/sshd/keepgate-tunnel.conf"))
	if !strings.Contains(shipped, "Match User kgtunnel,kgtunnel-*\n") || !strings.Contains(shipped, "/etc/ssh/keepgate-tunnel-keys/%u") {
		t.Fatal("deploy/sshd/keepgate-tunnel.conf: Match line or AuthorizedKeysFile changed; update testenv.StartSSHD")
	}
	match := "Match User " + s.User + "\n"
	var pre strings.Builder
	if len(o.Match) > 0 {
		pre.WriteString(match)
		for _, l := range o.Match {
			pre.WriteString("\t" + l + "\n")
		}
	}
	rendered := strings.NewReplacer("Match User kgtunnel,kgtunnel-*\n", match, "/etc/ssh/keepgate-tunnel-keys/%u", filepath.Join(keys, "%u")).Replace(shipped)
	WriteFile(t, dir, "tunnel.conf", pre.String()+rendered)
	// As Debian's sshd_config: the drop-in first, then the globals.
	conf := fmt.Sprintf(`Include %[1]s/tunnel.conf
Port %[2]s
ListenAddress 127.0.0.1
HostKey %[3]s
PidFile %[1]s/sshd.pid
AuthorizedKeysFile none
# Files under /tmp: "Authentication refused: bad ownership or modes for directory /tmp"
StrictModes no
UsePAM no
AllowUsers %[4]s
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
LogLevel VERBOSE
`, dir, port, s.HostKey, s.User)
	s.Config = WriteFile(t, dir, "sshd_config", conf)
	os.Chmod(s.HostKey, 0o600)
	if out, err := exec.Command(bin, "-t", "-f", s.Config).CombinedOutput(); err != nil {
		t.Fatalf("sshd -t rejected the config (with the shipped deploy/sshd block): %v\n%s\n%s", err, out, pre.String()+rendered)
	}
	s.Start()
	return s
}

// sshdAccount returns the account the test sshd logs in: SSHDUser as root
// (created, with a usable but password-less entry, if missing), else the
// current user.
func sshdAccount(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return u.Username
	}
	if _, err := user.Lookup(SSHDUser); err != nil {
		useradd := LookPath(t, "useradd")
		if out, err := exec.Command(useradd, "--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", SSHDUser).CombinedOutput(); err != nil {
			if _, err2 := user.Lookup(SSHDUser); err2 != nil { // another test process may have won
				t.Fatalf("useradd %s: %v\n%s", SSHDUser, err, out)
			}
		}
	}
	// useradd leaves '!' (locked): "User kgtunnel not allowed because
	// account is locked" with UsePAM no.
	if out, err := exec.Command(LookPath(t, "usermod"), "-p", "*", SSHDUser).CombinedOutput(); err != nil {
		t.Fatalf("usermod: %v\n%s", err, out)
	}
	return SSHDUser
}

// Start (re)starts sshd on Addr and waits until it listens: sshd writes
// its PidFile after binding, so no probe connection shows in its log.
func (s *SSHD) Start() {
	s.t.Helper()
	pidFile := filepath.Join(s.Dir, "sshd.pid")
	os.Remove(pidFile)
	s.Proc = Start(s.t, s.bin, []string{"-D", "-e", "-f", s.Config})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.Proc.Exited() {
			s.t.Fatalf("sshd exited:\n%s", s.Proc.Output())
		}
		if _, err := os.Stat(pidFile); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatalf("sshd did not listen on %s:\n%s", s.Addr, s.Proc.Output())
}

// Kill SIGKILLs the listening sshd and every session process it forked
// (they call setsid, so they are not in its process group): every tunnel
// session ends at once, as when the server reboots.
func (s *SSHD) Kill() {
	for _, pid := range descendants(s.Proc.Cmd.Process.Pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	s.Proc.Kill()
	os.Remove(filepath.Join(s.Dir, "sshd.pid"))
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	parent := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		rest := string(b[strings.LastIndexByte(string(b), ')')+1:])
		f := strings.Fields(rest)
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[pp] = append(parent[pp], child)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range parent[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// Socket is the path of a socket named name in SocketDir.
func (s *SSHD) Socket(name string) string { return filepath.Join(s.SocketDir, name) }

// Log returns what the current sshd run logged so far.
func (s *SSHD) Log() string { return s.Proc.Output() }

// Sessions counts the connections the current sshd run accepted, from its
// log ("Connection from 127.0.0.1 port N ...").
func (s *SSHD) Sessions() int { return strings.Count(s.Proc.Output(), "Connection from ") }

// Stop sends SIGTERM to the listening sshd (sessions go on).
func (s *SSHD) Stop() { s.Proc.Signal(syscall.SIGTERM) }

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
