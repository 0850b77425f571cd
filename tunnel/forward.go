package tunnel

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// Forward is one listener that keeptunnel asks the server to open, and the
// local address (a keepstore) that its connections are carried to.
//
// Remote is an absolute path for a unix socket (streamlocal-forward@openssh.com,
// the recommended kind: with StreamLocalBindUnlink yes the server rebinds
// it at once after a reconnect) or host:port for a TCP port (tcpip-forward;
// OpenSSH keeps a dead session's TCP port bound while anything keeps
// connecting to it, so after a broken link the new session may be refused
// the port for minutes, until the server's ClientAlive ends the old one).
type Forward struct {
	Name   string // label in metrics and logs
	Remote string // "/run/keepgate/tunnels/lab1.sock" or "127.0.0.1:15000"
	Local  string // "127.0.0.1:25108"
}

// Unix reports whether f is a unix-socket forward.
func (f Forward) Unix() bool { return strings.HasPrefix(f.Remote, "/") }

// Wire formats of the forwarding requests and channels (RFC 4254 §7 and
// OpenSSH's PROTOCOL §2.4).
type (
	streamLocalForwardMsg struct{ Path string }
	tcpipForwardMsg       struct {
		Addr string
		Port uint32
	}
	forwardedStreamLocal struct {
		Path     string
		Reserved string
	}
	forwardedTCPIP struct {
		Addr       string
		Port       uint32
		OriginAddr string
		OriginPort uint32
	}
)

// request asks the server to listen for f; a refusal is KindForwardDenied.
func (f Forward) request(c ssh.Conn) error {
	name, payload, _ := f.wire()
	ok, _, err := c.SendRequest(name, true, payload)
	if err != nil {
		return &Error{Kind: KindConnectionLost, Msg: "requesting forward " + f.Name, Err: err}
	}
	if ok {
		return nil
	}
	if f.Unix() {
		return errorf(KindForwardDenied, "the server refused to listen on unix socket %s (forward %s): check that AllowStreamLocalForwarding allows it, that the socket's directory exists and the tunnel account may write to it, and that StreamLocalBindUnlink is yes (else a stale socket file blocks it)", f.Remote, f.Name)
	}
	return errorf(KindForwardDenied, "the server refused to listen on TCP %s (forward %s): check PermitListen / permitlisten= for the tunnel account, and whether a previous, dead session still holds the port (OpenSSH keeps it bound while something connects to it; a unix socket forward avoids this)", f.Remote, f.Name)
}

// cancel asks the server to stop listening for f (at shutdown).
func (f Forward) cancel(c ssh.Conn) error {
	_, payload, name := f.wire()
	_, _, err := c.SendRequest(name, true, payload)
	return err
}

func (f Forward) wire() (name string, payload []byte, cancelName string) {
	if f.Unix() {
		return "streamlocal-forward@openssh.com", ssh.Marshal(&streamLocalForwardMsg{Path: f.Remote}), "cancel-streamlocal-forward@openssh.com"
	}
	host, port := splitTCP(f.Remote)
	return "tcpip-forward", ssh.Marshal(&tcpipForwardMsg{Addr: host, Port: port}), "cancel-tcpip-forward"
}

func splitTCP(addr string) (string, uint32) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	n, _ := strconv.ParseUint(p, 10, 16)
	return host, uint32(n)
}

// dispatcher hands the server's forwarded-* channels to their forwards.
type dispatcher struct {
	byRemote  map[string]*forwardState
	dialLocal func(ctx context.Context, addr string) (net.Conn, error)
	log       *slog.Logger
	m         *metrics
	mu        sync.Mutex // orders active.Add before a draining Wait
	draining  bool
	active    sync.WaitGroup
}

// forwardState is what a forward keeps across sessions.
type forwardState struct {
	Forward
	localDown atomic.Bool // logged once per change
}

// stopAccepting makes serve refuse new channels; after it, active.Wait
// waits for the open ones only.
func (d *dispatcher) stopAccepting() {
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
}

func newDispatcher(fs []*forwardState, dial func(context.Context, string) (net.Conn, error), log *slog.Logger, m *metrics) *dispatcher {
	d := &dispatcher{byRemote: map[string]*forwardState{}, dialLocal: dial, log: log, m: m}
	for _, f := range fs {
		key := f.Remote
		if !f.Unix() {
			host, port := splitTCP(f.Remote)
			key = net.JoinHostPort(host, strconv.Itoa(int(port)))
		}
		d.byRemote[key] = f
	}
	return d
}

// serve handles channels until chans is closed (the connection ended).
func (d *dispatcher) serve(ctx context.Context, chans <-chan ssh.NewChannel) {
	for nc := range chans {
		f, why := d.lookup(nc)
		if f == nil {
			nc.Reject(ssh.Prohibited, why)
			continue
		}
		d.mu.Lock()
		if d.draining {
			d.mu.Unlock()
			nc.Reject(ssh.ConnectionFailed, "keeptunnel is shutting down")
			continue
		}
		d.active.Add(1)
		d.mu.Unlock()
		go func() {
			defer d.active.Done()
			d.handle(ctx, f, nc)
		}()
	}
}

func (d *dispatcher) lookup(nc ssh.NewChannel) (*forwardState, string) {
	var key string
	switch nc.ChannelType() {
	case "forwarded-streamlocal@openssh.com":
		var p forwardedStreamLocal
		if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
			return nil, "malformed forwarded-streamlocal payload"
		}
		key = p.Path
	case "forwarded-tcpip":
		var p forwardedTCPIP
		if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
			return nil, "malformed forwarded-tcpip payload"
		}
		key = net.JoinHostPort(p.Addr, strconv.Itoa(int(p.Port)))
	default:
		return nil, "keeptunnel accepts only forwarded connections, not " + nc.ChannelType()
	}
	f := d.byRemote[key]
	if f == nil {
		return nil, "no forward was requested for " + key
	}
	return f, ""
}

// handle connects one forwarded connection to the local keepstore. When
// the keepstore is down the channel is refused at once (the server then
// closes the connection it accepted, so keepproxy fails over instead of
// waiting) and the tunnel stays up.
func (d *dispatcher) handle(ctx context.Context, f *forwardState, nc ssh.NewChannel) {
	local, err := d.dialLocal(ctx, f.Local)
	if err != nil {
		d.m.forwardConns.WithLabelValues(f.Name, "local_down").Inc()
		if !f.localDown.Swap(true) {
			d.log.Warn("local keepstore unreachable: refusing connections through the tunnel until it is back", "forward", f.Name, "local", f.Local, "error", err.Error())
		}
		nc.Reject(ssh.ConnectionFailed, "keepstore "+f.Local+" unreachable")
		return
	}
	if f.localDown.Swap(false) {
		d.log.Info("local keepstore reachable again", "forward", f.Name, "local", f.Local)
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		local.Close()
		return
	}
	go ssh.DiscardRequests(reqs)
	d.m.forwardConns.WithLabelValues(f.Name, "ok").Inc()
	active := d.m.forwardActive.WithLabelValues(f.Name)
	active.Inc()
	defer active.Dec()
	pipe(ch, local, d.m.forwardBytes.WithLabelValues(f.Name, "to_store"), d.m.forwardBytes.WithLabelValues(f.Name, "from_store"))
}

type adder interface{ Add(float64) }

// pipe copies both ways, passing each side's end of stream on as a
// half-close, and closes both when both directions are done or one fails.
func pipe(ch ssh.Channel, local net.Conn, toStore, fromStore adder) {
	var once sync.Once
	closeAll := func() { once.Do(func() { ch.Close(); local.Close() }) }
	done := make(chan struct{}, 2)
	go func() {
		err := copyCounting(local, ch, toStore)
		if err == nil {
			if cw, ok := local.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
		} else {
			closeAll()
		}
		done <- struct{}{}
	}()
	go func() {
		err := copyCounting(ch, local, fromStore)
		if err == nil {
			ch.CloseWrite()
		} else {
			closeAll()
		}
		done <- struct{}{}
	}()
	<-done
	<-done
	closeAll()
}

// copyBuf is large enough that one read fills several SSH packets.
const copyBuf = 256 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, copyBuf); return &b }}

// copyCounting copies src to dst until EOF (nil) or an error, adding the
// bytes to n as they pass.
func copyCounting(dst io.Writer, src io.Reader, n adder) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		r, err := src.Read(buf)
		if r > 0 {
			w, werr := dst.Write(buf[:r])
			n.Add(float64(w))
			if werr != nil {
				return werr
			}
			if w < r {
				return io.ErrShortWrite
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// localDialer returns the function that connects to a local keepstore,
// giving up after timeout.
func localDialer(timeout time.Duration) func(context.Context, string) (net.Conn, error) {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		return c, nil
	}
}
