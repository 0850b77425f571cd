package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// Kind classifies why a session could not be set up or ended. It decides
// what the supervisor does next (host key problems: retry slowly, at most
// once per HostKeyRetry; everything else: jittered exponential back-off),
// and it is the value of the keeptunnel_last_error metric.
type Kind string

// Error kinds.
const (
	KindNone             Kind = ""                  // no error (yet)
	KindConfig           Kind = "config"            // unusable options, identity or known_hosts file
	KindDNS              Kind = "dns"               // the server's name does not resolve
	KindRefused          Kind = "refused"           // TCP connection refused (nothing listens)
	KindUnreachable      Kind = "unreachable"       // no route, network down, other dial failures
	KindConnectTimeout   Kind = "connect_timeout"   // TCP connect took longer than ConnectTimeout
	KindHandshake        Kind = "handshake"         // SSH key exchange failed (bad peer, closed early)
	KindHandshakeTimeout Kind = "handshake_timeout" // SSH handshake took longer than HandshakeTimeout
	KindHostKeyUnknown   Kind = "host_key_unknown"  // known_hosts has no key for the server
	KindHostKeyMismatch  Kind = "host_key_mismatch" // the server's key differs from the pinned one
	KindHostKeyRevoked   Kind = "host_key_revoked"  // known_hosts marks the offered key @revoked
	KindAuth             Kind = "auth"              // the server refused our key
	KindForwardDenied    Kind = "forward_denied"    // the server refused a remote forward
	KindKeepalive        Kind = "keepalive"         // no reply from the server within interval × count
	KindConnectionLost   Kind = "connection_lost"   // the established connection ended
	KindCanceled         Kind = "canceled"          // shutting down
)

// hostKey reports whether k is a host key refusal, retried at most
// once per HostKeyRetry: retrying faster cannot help, an operator has to
// fix known_hosts (or the server).
func (k Kind) hostKey() bool {
	return k == KindHostKeyUnknown || k == KindHostKeyMismatch || k == KindHostKeyRevoked
}

// Error is a tunnel failure with its Kind, an operator-facing Msg (what
// happened and what to do) and the underlying error.
type Error struct {
	Kind Kind
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	switch {
	case e.Err == nil:
		return e.Msg
	case e.Msg == "":
		return e.Err.Error()
	default:
		return e.Msg + ": " + e.Err.Error()
	}
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the Kind of err: that of the outermost *Error in its
// chain, KindNone for nil, KindConnectionLost for anything unclassified.
func KindOf(err error) Kind {
	if err == nil {
		return KindNone
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return KindConnectionLost
}

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// classifyDial turns a failure of the TCP connect into an *Error. It is
// the one place that looks at dial errors: by type (net.DNSError, timeouts,
// errno values), never by message text.
func classifyDial(ctx context.Context, addr string, err error) *Error {
	if ctx.Err() != nil {
		return &Error{Kind: KindCanceled, Msg: "dial " + addr, Err: err}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &Error{Kind: KindDNS, Msg: fmt.Sprintf("cannot resolve the server name in %s (check server: and the resolver)", addr), Err: err}
	}
	if isTimeout(err) {
		return &Error{Kind: KindConnectTimeout, Msg: "connect to " + addr + " timed out", Err: err}
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return &Error{Kind: KindRefused, Msg: "connection to " + addr + " refused (is sshd running and listening there?)", Err: err}
	}
	return &Error{Kind: KindUnreachable, Msg: "cannot connect to " + addr, Err: err}
}

// classifyHandshake turns a failure of ssh.NewClientConn into an *Error.
// A host key refusal arrives as the *Error our HostKeyCallback returned;
// after the host key was accepted, a failure that is not the connection
// breaking is the server refusing our key (x/crypto/ssh has no typed error
// for that, so the stage tells it).
func classifyHandshake(ctx context.Context, err error, hostKeyAccepted, authAttempted bool) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if ctx.Err() != nil {
		return &Error{Kind: KindCanceled, Msg: "ssh handshake", Err: err}
	}
	if isTimeout(err) {
		return &Error{Kind: KindHandshakeTimeout, Msg: "ssh handshake timed out", Err: err}
	}
	if hostKeyAccepted && authAttempted && !isConnBroken(err) {
		return &Error{Kind: KindAuth, Msg: "the server refused our key: add the public key of identity_file to the tunnel account's authorized_keys on the server", Err: err}
	}
	return &Error{Kind: KindHandshake, Msg: "ssh handshake failed", Err: err}
}

// classifyLost wraps the end of an established connection.
func classifyLost(ctx context.Context, err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	if ctx.Err() != nil {
		return &Error{Kind: KindCanceled, Msg: "shutting down", Err: err}
	}
	return &Error{Kind: KindConnectionLost, Msg: "connection to the server lost", Err: err}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func isConnBroken(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
