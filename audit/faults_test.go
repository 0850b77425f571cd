package audit_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/audit"
	"github.com/keepgate/keepgate/audit/audittest"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/testenv"
)

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.Counter != nil {
				sum += m.Counter.GetValue()
			} else if m.Gauge != nil {
				sum += m.Gauge.GetValue()
			}
		}
	}
	return sum
}

func closeWithin(l *audit.Log, d time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	l.Close(ctx)
}

// rsyslogd frozen in drop mode: Record never blocks, and the dropped
// counter equals exactly the number of events missing from its file.
func TestStalledSyslogDropsAndCountsExactly(t *testing.T) {
	rs := testenv.StartRsyslog(t)
	s, err := audit.NewSyslogSink("tcp://"+rs.TCPAddr, "local2", "keepproxy")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	l := audit.New(audit.Options{Sinks: []audit.Sink{s}, QueueSize: 500, Registry: reg})
	const before, during = 200, 30000
	for i := 0; i < before; i++ {
		l.Record(context.Background(), audittest.Transfer(i))
	}
	rs.WaitLines(before, 10*time.Second)
	rs.Stop()
	for i := before; i < before+during; i++ {
		l.Record(context.Background(), audittest.Transfer(i))
	}
	dropped := metric(t, reg, "keepgate_audit_dropped_total")
	rs.Cont()
	closeWithin(l, 30*time.Second)
	written := metric(t, reg, "keepgate_audit_events_total")
	lines := rs.WaitLines(int(written), 15*time.Second)
	if dropped == 0 {
		t.Fatalf("no event was dropped while rsyslogd was stopped (%d sent); the test did not fill the buffers", during)
	}
	if got := metric(t, reg, "keepgate_audit_dropped_total"); got != dropped {
		t.Errorf("dropped went from %v to %v after the stall ended", dropped, got)
	}
	if missing := float64(before + during - len(lines)); missing != dropped || written+dropped != before+during {
		t.Errorf("%d events sent, %d in rsyslog's file (%v missing), written %v, dropped %v", before+during, len(lines), missing, written, dropped)
	}
	if _, err := audittest.DecodeSyslog(lines); err != nil {
		t.Error(err)
	}
	t.Logf("rsyslogd stopped: %v of %d events dropped, every other one delivered", dropped, during)
}

// In reject mode, transfers are refused while rsyslogd is frozen and
// admitted again once it reads.
func TestStalledSyslogRejects(t *testing.T) {
	rs := testenv.StartRsyslog(t)
	s, _ := audit.NewSyslogSink("tcp://"+rs.TCPAddr, "local2", "keepproxy")
	l := audit.New(audit.Options{Sinks: []audit.Sink{s}, QueueSize: 100, OnFull: audit.Reject, StallAfter: 500 * time.Millisecond})
	defer closeWithin(l, time.Second)
	ctx := context.Background()
	if _, err := l.Admit(ctx, nil); err != nil {
		t.Fatalf("refused before any stall: %v", err)
	}
	rs.Stop()
	stalled := time.Time{}
	for i := 0; i < 100000 && stalled.IsZero(); i++ {
		if _, err := l.Admit(ctx, nil); err != nil {
			if blockstore.KindOf(err) != blockstore.KindOverloaded {
				t.Fatalf("refusal of kind %v, want overloaded (503 + Retry-After)", blockstore.KindOf(err))
			}
			stalled = time.Now()
			break
		}
		l.Record(ctx, audittest.Transfer(i))
		if i%100 == 99 {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if stalled.IsZero() {
		t.Fatal("transfers were never refused while rsyslogd was stopped")
	}
	rs.Cont()
	cont := time.Now()
	deadline := cont.Add(10 * time.Second)
	for {
		if _, err := l.Admit(ctx, nil); err == nil {
			t.Logf("admitted again %v after SIGCONT", time.Since(cont).Round(time.Millisecond))
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("still refusing 10s after rsyslogd resumed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A syslog daemon that is not up at start: the log starts anyway and
// delivers what it queued once the daemon listens.
func TestSyslogUnreachableAtStart(t *testing.T) {
	addr := testenv.FreeAddr(t)
	s, _ := audit.NewSyslogSink("tcp://"+addr, "local2", "keepproxy")
	reg := prometheus.NewRegistry()
	l := audit.New(audit.Options{Sinks: []audit.Sink{s}, Registry: reg})
	for i := 0; i < 10; i++ {
		l.Record(context.Background(), audittest.Transfer(i))
	}
	time.Sleep(300 * time.Millisecond)
	if metric(t, reg, "keepgate_audit_write_errors_total") == 0 {
		t.Error("no failed connection counted while nothing listened")
	}
	rs := testenv.StartRsyslogOn(t, addr)
	closeWithin(l, 30*time.Second)
	if lines := rs.WaitLines(10, 10*time.Second); len(lines) != 10 {
		t.Fatalf("%d events arrived, want 10", len(lines))
	}
}

// The file moved away (logrotate without the HUP) or deleted: the sink
// notices and writes a new file at the path; after mv + Reopen, too.
func TestFileMovedOrDeleted(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.json")
	l := audit.New(audit.Options{Sinks: []audit.Sink{&audit.FileSink{Path: path}}})
	defer closeWithin(l, 5*time.Second)
	count := func(p string) int {
		data, _ := os.ReadFile(p)
		ev, err := audittest.DecodeJSONLines(data)
		if err != nil {
			t.Error(err)
		}
		return len(ev)
	}
	waitCount := func(p string, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for count(p) != n {
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %d events, want %d", p, count(p), n)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	l.Record(context.Background(), audittest.Transfer(1))
	waitCount(path, 1)
	os.Rename(path, path+".1") // moved, no HUP
	time.Sleep(1100 * time.Millisecond)
	l.Record(context.Background(), audittest.Transfer(2))
	waitCount(path, 1)
	waitCount(path+".1", 1)
	os.Remove(path) // deleted
	time.Sleep(1100 * time.Millisecond)
	l.Record(context.Background(), audittest.Transfer(3))
	waitCount(path, 1)
	os.Rename(path, path+".2") // logrotate: mv, then postrotate's HUP
	l.Reopen()
	l.Record(context.Background(), audittest.Transfer(4))
	waitCount(path, 1)
	waitCount(path+".2", 1)
}

// A full disk (/dev/full answers every write with ENOSPC): events are
// dropped and counted, nothing blocks, and errors are counted.
func TestFileDiskFull(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	reg := prometheus.NewRegistry()
	l := audit.New(audit.Options{Sinks: []audit.Sink{&audit.FileSink{Path: "/dev/full"}}, QueueSize: 10, Registry: reg})
	for i := 0; i < 100; i++ {
		l.Record(context.Background(), audittest.Transfer(i))
	}
	time.Sleep(300 * time.Millisecond)
	closeWithin(l, 200*time.Millisecond)
	if w, d, e := metric(t, reg, "keepgate_audit_events_total"), metric(t, reg, "keepgate_audit_dropped_total"), metric(t, reg, "keepgate_audit_write_errors_total"); w != 0 || d != 100 || e == 0 {
		t.Errorf("written %v dropped %v errors %v; want 0, 100, >0", w, d, e)
	}
}

// A burst of 100,000 transfers: Record never blocks, and every event is
// either in rsyslog's file or counted as dropped.
func TestBurst(t *testing.T) {
	rs := testenv.StartRsyslog(t)
	s, _ := audit.NewSyslogSink("tcp://"+rs.TCPAddr, "local2", "keepproxy")
	reg := prometheus.NewRegistry()
	l := audit.New(audit.Options{Sinks: []audit.Sink{s}, Registry: reg})
	const n = 100000
	for i := 0; i < n; i++ {
		l.Record(context.Background(), audittest.Transfer(i))
	}
	closeWithin(l, 60*time.Second)
	written, dropped := metric(t, reg, "keepgate_audit_events_total"), metric(t, reg, "keepgate_audit_dropped_total")
	lines := rs.WaitLines(int(written), 30*time.Second)
	if written+dropped != n || float64(len(lines)) != written {
		t.Fatalf("%d sent: written %v, dropped %v, in the file %d", n, written, dropped, len(lines))
	}
	t.Logf("burst of %d: %v written, %v dropped", n, written, dropped)
}
