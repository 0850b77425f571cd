package tunnel

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// activityConn records when bytes last arrived from the server: any byte
// (a keepalive reply or data) proves the path alive.
type activityConn struct {
	net.Conn
	clock    Clock
	lastRead atomic.Int64 // UnixNano
}

func newActivityConn(c net.Conn, clock Clock) *activityConn {
	a := &activityConn{Conn: c, clock: clock}
	a.lastRead.Store(clock.Now().UnixNano())
	return a
}

func (a *activityConn) Read(p []byte) (int, error) {
	n, err := a.Conn.Read(p)
	if n > 0 {
		a.lastRead.Store(a.clock.Now().UnixNano())
	}
	return n, err
}

func (a *activityConn) last() time.Time { return time.Unix(0, a.lastRead.Load()) }

// keepalive sends keepalive@openssh.com every interval (one outstanding at
// a time: x/crypto/ssh serialises global requests, and a request to a dead
// peer blocks for ever) and races the replies against a timer: when
// nothing at all has arrived from the server for interval × count, the
// link is dead and keepalive returns a KindKeepalive error. It returns nil
// when ctx ends and the connection's error when it breaks. x/crypto/ssh
// has no keepalive of its own.
func keepalive(ctx context.Context, c ssh.Conn, ac *activityConn, interval time.Duration, count int, clock Clock) error {
	limit := interval * time.Duration(count)
	replies := make(chan error, 1)
	pending := false
	nextSend := clock.Now().Add(interval)
	for {
		now := clock.Now()
		deadline := ac.last().Add(limit)
		if !now.Before(deadline) {
			return errorf(KindKeepalive, "no reply from the server for %v (keepalive_interval %v × keepalive_count %d): the path is dead; closing the connection", now.Sub(ac.last()).Round(time.Millisecond), interval, count)
		}
		if !pending && !now.Before(nextSend) {
			pending = true
			go func() {
				_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
				replies <- err
			}()
			nextSend = now.Add(interval)
		}
		wait := deadline.Sub(now)
		if !pending {
			wait = min(wait, nextSend.Sub(now))
		}
		select {
		case <-ctx.Done():
			return nil
		case err := <-replies:
			pending = false
			if err != nil {
				return &Error{Kind: KindConnectionLost, Msg: "keepalive: connection to the server lost", Err: err}
			}
		case <-clock.After(wait):
		}
	}
}
