package gateway

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

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
