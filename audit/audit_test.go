package audit_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/keepgate/keepgate/audit"
	"github.com/keepgate/keepgate/audit/audittest"
	"github.com/keepgate/keepgate/internal/testenv"
)

func TestFileSinkConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Harness {
		path := filepath.Join(t.TempDir(), "audit.json")
		return audittest.Harness{Sink: &audit.FileSink{Path: path}, Received: func() []audit.Event {
			data, _ := os.ReadFile(path)
			ev, err := audittest.DecodeJSONLines(data)
			if err != nil {
				t.Error(err)
			}
			return ev
		}}
	})
}

func TestStreamSinkConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Harness {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var buf bytes.Buffer
		go func() {
			b := make([]byte, 64<<10)
			for {
				n, err := r.Read(b)
				mu.Lock()
				buf.Write(b[:n])
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
		t.Cleanup(func() { w.Close(); r.Close() })
		return audittest.Harness{Sink: &audit.StreamSink{Label: "stdout", W: w}, Received: func() []audit.Event {
			mu.Lock()
			defer mu.Unlock()
			ev, err := audittest.DecodeJSONLines(buf.Bytes())
			if err != nil {
				t.Error(err)
			}
			return ev
		}}
	})
}

// rsyslogd escapes control characters it receives as #ooo (octal).
func rsyslogNormalize(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 {
			fmt.Fprintf(&b, "#%03o", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func syslogHarness(t *testing.T, network string) audittest.Harness {
	rs := testenv.StartRsyslog(t)
	addr := "tcp://" + rs.TCPAddr
	if network == "unix" {
		addr = "unix://" + rs.Socket
	}
	s, err := audit.NewSyslogSink(addr, "local2", "keepproxy")
	if err != nil {
		t.Fatal(err)
	}
	return audittest.Harness{Sink: s, Normalize: rsyslogNormalize, Received: func() []audit.Event {
		ev, err := audittest.DecodeSyslog(rs.Lines())
		if err != nil {
			t.Error(err)
		}
		return ev
	}}
}

func TestSyslogTCPConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Harness { return syslogHarness(t, "tcp") })
}

func TestSyslogUnixConformance(t *testing.T) {
	audittest.Run(t, func(t *testing.T) audittest.Harness { return syslogHarness(t, "unix") })
}

func TestSyslogAddressErrors(t *testing.T) {
	for _, tc := range []struct{ addr, fac, want string }{
		{"udp://127.0.0.1:514", "local2", "UDP is not offered"},
		{"tcp://127.0.0.1", "local2", "want tcp://host:port"},
		{"/dev/log", "local2", "want tcp://host:port or unix:///path"},
		{"unix:///dev/log", "local9", `facility "local9"`},
	} {
		if _, err := audit.NewSyslogSink(tc.addr, tc.fac, "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.addr, tc.fac, err, tc.want)
		}
	}
}
