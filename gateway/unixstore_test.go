package gateway

import (
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// newUnixTestStore is a testStore served on a unix socket, listed as
// http+unix:///path.
func newUnixTestStore(t *testing.T, uuid, path string) (*testStore, net.Listener) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f := newTestStoreOn(t, uuid, ln)
	f.svc = Service{UUID: uuid, URL: "http+unix://" + path}
	return f, ln
}

// Stores on unix sockets take PUTs and GETs; when one's socket stops
// answering, reads fail over to the other and writes go elsewhere.
func TestUnixSocketStores(t *testing.T) {
	dir := t.TempDir()
	var unix []*testStore
	var lns []net.Listener
	c := newCluster(t, 1, func(o *Options) {
		for i := 0; i < 2; i++ {
			f, ln := newUnixTestStore(t, fmt.Sprintf("zzzzz-bi6l4-unix%011d", i), filepath.Join(dir, fmt.Sprintf("s%d.sock", i)))
			unix, lns = append(unix, f), append(lns, ln)
			o.Services = append(o.Services, f.svc)
		}
		o.DefaultReplicas = 3
	})
	body := []byte("through a unix socket\n")
	hash := fmt.Sprintf("%x", md5.Sum(body))
	resp := c.do("PUT", "/"+hash, tokRW, body, nil)
	loc := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("PUT: %d %s", resp.StatusCode, loc)
	}
	for i, f := range unix {
		if f.puts.Load() != 1 {
			t.Fatalf("unix store %d got %d PUTs", i, f.puts.Load())
		}
	}
	// Both unix stores down (listener closed, socket file left: refused).
	for _, ln := range lns {
		ln.(*net.UnixListener).SetUnlinkOnClose(false)
		ln.Close()
	}
	for i := 0; i < 5; i++ {
		resp = c.do("GET", "/"+loc, tokRW, nil, nil)
		if got := readAll(t, resp); resp.StatusCode != 200 || got != string(body) {
			t.Fatalf("GET with the unix stores down: %d %q", resp.StatusCode, got)
		}
	}
}

// A refused dial marks the socket down for the hold time: further dials
// fail at once without touching it; after the hold, a listener that came
// back is reached again.
func TestUnixSocketDownHold(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s := &unixSockets{hold: 300 * time.Millisecond}
	host := s.host(path)
	ctx := context.Background()
	if _, err := s.dial(ctx, "tcp", host+":80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("first dial: %v, want ECONNREFUSED", err)
	}
	// Something listens again, but within the hold the store stays down.
	syscall.Unlink(path)
	ln2, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	if _, err := s.dial(ctx, "tcp", host+":80"); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial within the hold: %v, want the remembered refusal", err)
	}
	time.Sleep(350 * time.Millisecond)
	c, err := s.dial(ctx, "tcp", host+":80")
	if err != nil {
		t.Fatalf("dial after the hold: %v", err)
	}
	c.Close()
	if _, err := s.dial(ctx, "tcp", "unix-unknown.invalid:80"); err == nil {
		t.Fatal("dial of an unknown host succeeded")
	}
}
