package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Postgres is the PostgreSQL 15 server (Debian's) of one test run: the
// first test process of a `go test` run that asks for it starts it (initdb
// and pg_ctl through runuser as the postgres user, loopback only, trust
// authentication, fsync off) under /tmp/keepgate-pg-<go command's pid>,
// the others find it there; a watcher stops it and removes its directory
// once that go command has exited. See ../shared/INFRA.md §6.
type Postgres struct {
	Dir  string
	Port int
	bin  string
}

var (
	pgOnce sync.Once
	pgSrv  *Postgres
	pgErr  error
	pgSeq  atomic.Int64
)

// pgBin finds the server binaries (postgresql-15 puts them off PATH).
func pgBin() string {
	for _, d := range []string{"/usr/lib/postgresql/15/bin"} {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb"); len(m) > 0 {
		return filepath.Dir(m[len(m)-1])
	}
	return ""
}

// StartPostgres returns the run's server, starting it on first use; a
// missing PostgreSQL skips the test (fails it under CI=true).
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := pgBin()
	if bin == "" {
		Missing(t, "PostgreSQL server binaries (/usr/lib/postgresql/15/bin/initdb; apt-get install postgresql)")
	}
	pgOnce.Do(func() { pgSrv, pgErr = startShared(bin) })
	if pgErr != nil {
		t.Fatalf("starting PostgreSQL: %v", pgErr)
	}
	return pgSrv
}

// NewDatabase creates an empty database on the run's server and returns
// its DSN (postgres://keepgate@127.0.0.1:PORT/NAME?sslmode=disable); it is
// dropped at cleanup.
func NewDatabase(t testing.TB) string {
	t.Helper()
	p := StartPostgres(t)
	name := fmt.Sprintf("kg_%d_%d", os.Getpid(), pgSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		t.Fatalf("PostgreSQL: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, p.DSN("postgres")); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	return p.DSN(name)
}

// DSN is the URL of database db as the superuser keepgate.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://keepgate@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}

// Exec runs one statement as the superuser on database db (e.g. to
// terminate a proxy's connections).
func (p *Postgres) Exec(t testing.TB, db, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN(db))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// asServer runs a server binary as the postgres user (as root), or as
// ourselves otherwise.
func asServer(bin string, args ...string) *exec.Cmd {
	if os.Getuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	}
	return exec.Command(bin, args...)
}

func startShared(bin string) (*Postgres, error) {
	run := os.Getppid() // the go command: shared by the packages of one run
	dir := fmt.Sprintf("/tmp/keepgate-pg-%d", run)
	lockf, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	defer lockf.Close()
	if err := syscall.Flock(int(lockf.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lockf.Fd()), syscall.LOCK_UN)
	p := &Postgres{Dir: dir, bin: bin}
	if b, err := os.ReadFile(filepath.Join(dir, "port")); err == nil {
		p.Port, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		if p.ready() {
			return p, nil
		}
	}
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Getuid() == 0 {
		if out, err := exec.Command("chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("chown postgres %s: %v %s", dir, err, out)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asServer(filepath.Join(bin, "initdb"), "-D", data, "-U", "keepgate", "-A", "trust", "-E", "UTF8", "-N", "--no-instructions").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if p.Port, err = freePort(); err != nil {
		return nil, err
	}
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", p.Port, dir)
	if out, err := asServer(filepath.Join(bin, "pg_ctl"), "-D", data, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "30", "-o", opts, "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	if err := os.WriteFile(filepath.Join(dir, "port"), []byte(strconv.Itoa(p.Port)), 0o644); err != nil {
		return nil, err
	}
	// Stop the server once the go command of this run has exited.
	stop := asServer(filepath.Join(bin, "pg_ctl"), "-D", data, "-m", "immediate", "-w", "stop")
	watcher := exec.Command("sh", "-c", fmt.Sprintf("while kill -0 %d 2>/dev/null; do sleep 2; done; %s; rm -rf %s %s.lock",
		run, shellJoin(stop.Args), dir, dir))
	watcher.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := watcher.Start(); err != nil {
		return nil, err
	}
	go watcher.Wait()
	return p, nil
}

func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (p *Postgres) ready() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		return false
	}
	c.Close(ctx)
	return true
}
