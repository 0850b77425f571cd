// Package audittest is the conformance suite every audit.Sink passes, run
// against the sink's real destination (a file, a pipe, rsyslogd): every
// event arrives once, whole, with its fields intact, awkward values
// included, and across a reopen.
package audittest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leodido/go-syslog/v4/rfc5424"

	"github.com/keepgate/keepgate/audit"
	"github.com/keepgate/keepgate/metering"
)

// Harness is one sink under test and its destination.
type Harness struct {
	Sink audit.Sink
	// Received returns the events that reached the destination so far.
	Received func() []audit.Event
	// Normalize maps a value sent to the value the destination keeps
	// (rsyslogd escapes control characters as #ooo); nil: unchanged.
	Normalize func(string) string
}

// Run runs the suite; newHarness gives each subtest a fresh sink and
// destination.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("EveryEventArrivesOnceWithItsFields", func(t *testing.T) {
		h := newHarness(t)
		l := audit.New(audit.Options{Sinks: []audit.Sink{h.Sink}})
		want := map[string]*metering.Transfer{}
		for i := 0; i < 1000; i++ {
			tr := Transfer(i)
			want[tr.RequestID] = tr
			l.Record(context.Background(), tr)
		}
		closeLog(t, l)
		got := waitEvents(h, len(want))
		if len(got) != len(want) {
			t.Fatalf("%d events arrived, want %d", len(got), len(want))
		}
		seen := map[string]bool{}
		for _, e := range got {
			tr, ok := want[e.RequestID]
			if !ok || seen[e.RequestID] {
				t.Fatalf("unexpected or repeated event %q", e.RequestID)
			}
			seen[e.RequestID] = true
			Compare(t, e, tr, h.Normalize)
		}
	})
	t.Run("AwkwardValues", func(t *testing.T) {
		h := newHarness(t)
		l := audit.New(audit.Options{Sinks: []audit.Sink{h.Sink}})
		tr := Transfer(1)
		tr.UserAgent = "line1\nline2 \"quoted\" ] back\\slash \xff\xfe end"
		tr.Host = "h]\"\\"
		l.Record(context.Background(), tr)
		closeLog(t, l)
		got := waitEvents(h, 1)
		if len(got) != 1 {
			t.Fatalf("%d events, want 1", len(got))
		}
		Compare(t, got[0], tr, h.Normalize)
	})
	t.Run("Reopen", func(t *testing.T) {
		h := newHarness(t)
		l := audit.New(audit.Options{Sinks: []audit.Sink{h.Sink}})
		l.Record(context.Background(), Transfer(1))
		waitEvents(h, 1)
		l.Reopen()
		l.Record(context.Background(), Transfer(2))
		closeLog(t, l)
		if got := waitEvents(h, 2); len(got) != 2 {
			t.Fatalf("%d events after a reopen, want 2", len(got))
		}
	})
}

func closeLog(t *testing.T, l *audit.Log) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l.Close(ctx)
	if ctx.Err() != nil {
		t.Fatal("the log's queue was not written out within 20s")
	}
}

func waitEvents(h Harness, n int) []audit.Event {
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.Received()
		if len(got) >= n || time.Now().After(deadline) {
			time.Sleep(100 * time.Millisecond) // and nothing more comes
			return h.Received()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Transfer returns a distinct, fully populated transfer.
func Transfer(i int) *metering.Transfer {
	ops := []string{"put", "post", "get", "head", "index"}
	tr := &metering.Transfer{
		Time: time.Date(2026, 12, 2, 10, 0, 0, i*1000, time.UTC), RequestID: fmt.Sprintf("req-%06d", i),
		ProxyID: "proxy-1", Host: "keep.example.org", Client: "192.0.2.7", UserAgent: "arv-put/3.1",
		PrincipalKind: "token-file", PrincipalID: fmt.Sprintf("user%d", i%7), Storage: "default",
		Op: ops[i%len(ops)], Block: fmt.Sprintf("%032x+%d", i, i*10),
		ClassesAsked: []string{"default", "archive"}, ClassesConfirmed: map[string]int{"default": 2, "archive": 1},
		ReplicasWanted: 2, ReplicasStored: 2, BytesIn: int64(i) * 100, BytesOut: int64(i) * 7,
		Status: []int{200, 403, 502}[i%3], TTFB: time.Duration(i) * time.Microsecond, Duration: time.Duration(i) * time.Millisecond,
	}
	if tr.Status != 200 {
		tr.ErrorKind = "forbidden"
	}
	tr.Touch("zzzzz-bi6l4-000000000000001")
	tr.Touch("zzzzz-bi6l4-000000000000002")
	return tr
}

// Compare fails t when e is not the event of tr.
func Compare(t *testing.T, e audit.Event, tr *metering.Transfer, normalize func(string) string) {
	t.Helper()
	want := audit.NewEvent(tr)
	if normalize != nil {
		for _, p := range []*string{&want.UserAgent, &want.Host} {
			*p = normalize(*p)
		}
	}
	wj, _ := json.Marshal(want)
	gj, _ := json.Marshal(e)
	if !bytes.Equal(wj, gj) {
		t.Errorf("event differs:\n got %s\nwant %s", gj, wj)
	}
}

// DecodeJSONLines decodes JSON-lines records; a line that is not one
// whole event is returned as an error.
func DecodeJSONLines(data []byte) ([]audit.Event, error) {
	var out []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e audit.Event
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			return out, fmt.Errorf("broken record %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// DecodeSyslog parses RFC 5424 records (one per string) back into events.
func DecodeSyslog(records []string) ([]audit.Event, error) {
	p := rfc5424.NewParser(rfc5424.WithBestEffort())
	var out []audit.Event
	for _, r := range records {
		m, err := p.Parse([]byte(r))
		if err != nil {
			return out, fmt.Errorf("broken record %q: %v", r, err)
		}
		sm := m.(*rfc5424.SyslogMessage)
		if sm.StructuredData == nil {
			return out, fmt.Errorf("record without structured data: %q", r)
		}
		sd := (*sm.StructuredData)[audit.SDID]
		e := audit.Event{
			Time: sd["time"], RequestID: sd["request_id"], ProxyID: sd["proxy_id"], Host: sd["host"], Rule: sd["rule"],
			Client: sd["client"], PrincipalKind: sd["principal_kind"], PrincipalID: sd["principal_id"],
			Storage: sd["storage"], Op: sd["op"], Block: sd["block"], ErrorKind: sd["error_kind"], UserAgent: sd["user_agent"],
			ClassesAsked: split(sd["classes_asked"]), ClassesConfirmed: map[string]int{}, Stores: split(sd["stores"]),
		}
		for _, c := range split(sd["classes_confirmed"]) {
			name, n, _ := strings.Cut(c, "=")
			e.ClassesConfirmed[name], _ = strconv.Atoi(n)
		}
		e.ReplicasWanted, _ = strconv.Atoi(sd["replicas_wanted"])
		e.ReplicasStored, _ = strconv.Atoi(sd["replicas_stored"])
		e.Status, _ = strconv.Atoi(sd["status"])
		e.BytesIn, _ = strconv.ParseInt(sd["bytes_in"], 10, 64)
		e.BytesOut, _ = strconv.ParseInt(sd["bytes_out"], 10, 64)
		e.TTFBSeconds, _ = strconv.ParseFloat(sd["ttfb_seconds"], 64)
		e.DurationSeconds, _ = strconv.ParseFloat(sd["duration_seconds"], 64)
		out = append(out, e)
	}
	return out, nil
}

func split(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}
