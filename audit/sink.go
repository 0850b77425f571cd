package audit

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"
)

// Sink is one destination of audit records: its format and its transport.
//
// Contract. Encode turns an event into one complete record (with any
// framing the transport needs); it runs on the sink's writer, off the
// request path. Open,
// Write and Close are called from one goroutine only (the sink's writer):
//   - Open connects or opens; it may fail (the writer retries with
//     back-off) and must give up by the deadline.
//   - Write writes p, which is a whole record or the rest of one whose
//     earlier Write timed out, and returns by the deadline. It returns how
//     many bytes were written; an error that is os.ErrDeadlineExceeded
//     means "stalled, try the rest again on the same connection"; any
//     other error means the connection is lost: the writer Closes, Opens
//     again and writes the whole record anew. A sink for which a partial
//     record cannot be resumed (a file, a datagram) writes all or nothing.
//   - Close releases the connection or file; Write is not called again
//     before the next Open.
//
// Every implementation passes audittest.Run.
type Sink interface {
	Name() string
	Encode(e Event) ([]byte, error)
	Open(deadline time.Time) error
	Write(p []byte, deadline time.Time) (int, error)
	Close() error
}

// Reopener is a Sink that should reopen its file on SIGHUP (see Log.Reopen).
type Reopener interface{ ReopenOnHUP() bool }

// ---- syslog ----

// SyslogSink sends RFC 5424 records to a syslog daemon over TCP, with RFC
// 6587 octet-counting framing ("LEN SP MSG"), or to a local unix datagram
// socket such as /dev/log (one record per datagram).
type SyslogSink struct {
	Network, Address string // "tcp" host:port, or "unixgram" path
	Facility         int    // 0-23; local2 is 18
	Hostname, App    string
	name             string
	conn             net.Conn
}

// Facilities maps the facility names syslog.conf uses to their codes.
var Facilities = map[string]int{"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
	"news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "local0": 16, "local1": 17, "local2": 18,
	"local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23}

// NewSyslogSink parses address: tcp://host:port or unix:///path/to/socket.
func NewSyslogSink(address, facility, app string) (*SyslogSink, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("syslog address %q: %v", address, err)
	}
	fac, ok := Facilities[facility]
	if !ok {
		return nil, fmt.Errorf("syslog facility %q: use one of kern, user, daemon, auth, local0 … local7", facility)
	}
	host, _ := os.Hostname()
	s := &SyslogSink{Facility: fac, Hostname: host, App: app, name: "syslog:" + address}
	switch {
	case u.Scheme == "tcp" && u.Host != "" && u.Path == "":
		if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
			return nil, fmt.Errorf("syslog address %q: want tcp://host:port", address)
		}
		s.Network, s.Address = "tcp", u.Host
	case u.Scheme == "unix" && u.Host == "" && u.Path != "":
		s.Network, s.Address = "unixgram", u.Path
	default:
		return nil, fmt.Errorf("syslog address %q: want tcp://host:port or unix:///path (e.g. unix:///dev/log); UDP is not offered, it loses records under load", address)
	}
	return s, nil
}

func (s *SyslogSink) Name() string { return s.name }

func (s *SyslogSink) Encode(e Event) ([]byte, error) {
	rec, err := e.Syslog(s.Facility, s.Hostname, s.App, os.Getpid())
	if err != nil || s.Network != "tcp" {
		return rec, err
	}
	return append([]byte(strconv.Itoa(len(rec))+" "), rec...), nil
}

func (s *SyslogSink) Open(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	c, err := d.Dial(s.Network, s.Address)
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		// A small send buffer makes a stalled daemon show as a stalled
		// write soon, instead of after megabytes of kernel buffering.
		tc.SetWriteBuffer(64 << 10)
	}
	s.conn = c
	return nil
}

func (s *SyslogSink) Write(p []byte, deadline time.Time) (int, error) {
	s.conn.SetWriteDeadline(deadline)
	n, err := s.conn.Write(p)
	if s.Network == "unixgram" && err != nil {
		n = 0 // a datagram is sent whole or not at all
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.ENOBUFS) {
			err = os.ErrDeadlineExceeded
		}
	}
	return n, err
}

func (s *SyslogSink) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}

// ---- JSON lines: a file, or stdout ----

// FileSink appends JSON lines to a file, created 0640 if missing. It is
// reopened on SIGHUP (logrotate's postrotate), and by itself when the file
// it writes was moved or deleted without one. A record is written whole or
// not at all: after a failed write (a full disk) the file is cut back to
// its previous length.
type FileSink struct {
	Path string
	f    *os.File
	size int64
	// checked is when the path was last compared with the open file.
	checked time.Time
}

func (s *FileSink) Name() string      { return "file:" + s.Path }
func (s *FileSink) ReopenOnHUP() bool { return true }

func (s *FileSink) Encode(e Event) ([]byte, error) { return e.JSONLine(), nil }

func (s *FileSink) Open(time.Time) error {
	f, err := os.OpenFile(s.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	s.f, s.size, s.checked = f, st.Size(), time.Now()
	return nil
}

// errMoved: the file at Path is no longer the one open (moved, deleted).
var errMoved = errors.New("the audit file was moved or deleted; reopening it")

func (s *FileSink) Write(p []byte, _ time.Time) (int, error) {
	if time.Since(s.checked) > time.Second {
		s.checked = time.Now()
		open, err1 := s.f.Stat()
		cur, err2 := os.Stat(s.Path)
		if err1 != nil || err2 != nil || !os.SameFile(open, cur) {
			return 0, errMoved
		}
	}
	n, err := s.f.Write(p)
	if err != nil {
		if n > 0 {
			s.f.Truncate(s.size) // never leave half a record
		}
		return 0, err
	}
	s.size += int64(n)
	return n, nil
}

func (s *FileSink) Close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// StreamSink writes JSON lines to an io.Writer that needs no opening,
// such as stdout (for svlogd).
type StreamSink struct {
	Label string
	W     io.Writer
}

func (s *StreamSink) Name() string                   { return s.Label }
func (s *StreamSink) Encode(e Event) ([]byte, error) { return e.JSONLine(), nil }
func (s *StreamSink) Open(time.Time) error           { return nil }
func (s *StreamSink) Write(p []byte, deadline time.Time) (int, error) {
	if f, ok := s.W.(*os.File); ok {
		f.SetWriteDeadline(deadline) // works when it is a pipe; else ignored
	}
	return s.W.Write(p)
}
func (s *StreamSink) Close() error { return nil }
