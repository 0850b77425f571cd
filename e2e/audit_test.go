package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/audit"
	"github.com/keepgate/keepgate/audit/audittest"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// The transfer audit log through a real keepproxy, with all three sinks at
// once (rsyslogd over TCP, a JSON file, stdout): over 1,000 mixed
// transfers every one is in every sink, once, with the status and the
// request id the client saw; no token and no +A signature appears in any
// sink, log line or metric; mv + SIGHUP rotates the file.
func TestAuditLogThroughProxy(t *testing.T) {
	rs := testenv.StartRsyslog(t)
	file := filepath.Join(t.TempDir(), "audit.json")
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2, ProxyExtra: fmt.Sprintf(
		"proxy_id: proxy-e2e\naudit:\n  sinks:\n    - type: syslog\n      address: tcp://%s\n    - type: file\n      path: %s\n    - type: stdout\n", rs.TCPAddr, file)})

	type sent struct {
		status int
		op     string
	}
	want := map[string]sent{} // request id → what the client saw
	do := func(method, path, token string, body []byte, hdr map[string]string) (*http.Response, string) {
		var r io.Reader
		if body != nil {
			r = bytes.NewReader(body)
		}
		resp, text := request(t, method, c.ProxyURL+path, token, r, int64(len(body)), hdr)
		id := resp.Header.Get("X-Request-Id")
		if id == "" {
			t.Fatalf("%s %s: no X-Request-Id", method, path)
		}
		op := strings.ToLower(method)
		if strings.HasPrefix(path, "/index") {
			op = "index"
		}
		want[id] = sent{resp.StatusCode, op}
		return resp, text
	}
	var locs []string
	for i := 0; len(want) < 1000; i++ {
		data, h := volumetest.Block(uint64(5000+i), 1000+i)
		_, loc := do("PUT", "/"+h.String(), testenv.TokenRW, data, map[string]string{"X-Keep-Desired-Replicas": "1"})
		locs = append(locs, loc)
		do("GET", "/"+loc, testenv.TokenRW, nil, nil)
		do("HEAD", "/"+loc, testenv.TokenRO, nil, nil)
		do("GET", "/"+loc, "wrong-token-0123456789", nil, nil)                                // 403
		do("PUT", "/"+h.String(), testenv.TokenRW, append(data, 'x'), nil)                    // 400 hash/size
		do("GET", fmt.Sprintf("/%032x+5", i), testenv.TokenRW, nil, nil)                      // 404
		do("GET", "/"+loc, testenv.TokenRW, nil, map[string]string{"Range": "bytes=999999-"}) // 416
		if i%10 == 0 {
			do("POST", "/", testenv.TokenRW, data, nil)
			do("GET", "/index", testenv.TokenAdmin, nil, nil)
		}
	}

	// Rotation: mv, SIGHUP, then one more transfer lands in the new file.
	time.Sleep(200 * time.Millisecond)
	if err := os.Rename(file, file+".1"); err != nil {
		t.Fatal(err)
	}
	c.Proxy.Signal(sighup)
	time.Sleep(200 * time.Millisecond)
	resp, _ := do("GET", "/"+locs[0], testenv.TokenRW, nil, nil)
	rotatedID := resp.Header.Get("X-Request-Id")

	check := func(sink string, events []audit.Event) {
		t.Helper()
		seen := map[string]bool{}
		for _, e := range events {
			w, ok := want[e.RequestID]
			if !ok || seen[e.RequestID] {
				t.Fatalf("%s: unexpected or repeated event %+v", sink, e)
			}
			seen[e.RequestID] = true
			if e.Status != w.status || e.Op != w.op || e.ProxyID != "proxy-e2e" || e.Storage != "default" || e.Client != "127.0.0.1" {
				t.Fatalf("%s: event %+v, client saw %+v", sink, e, w)
			}
			if e.Status == 200 && e.Op != "index" && (e.PrincipalKind != "token-file" || e.PrincipalID == "" || !blockRe.MatchString(e.Block)) {
				t.Fatalf("%s: event %+v lacks its principal or block", sink, e)
			}
			if (e.Status >= 400) != (e.ErrorKind != "") {
				t.Fatalf("%s: status %d with error kind %q", sink, e.Status, e.ErrorKind)
			}
			if e.Op == "put" && e.Status == 200 && (e.BytesIn == 0 || e.ReplicasStored != 1 || e.ReplicasWanted != 1 || len(e.Stores) == 0) {
				t.Fatalf("%s: PUT event %+v", sink, e)
			}
			if e.Op == "get" && e.Status == 200 && (e.BytesOut == 0 || e.TTFBSeconds <= 0 || e.DurationSeconds < e.TTFBSeconds) {
				t.Fatalf("%s: GET event %+v", sink, e)
			}
		}
		if len(seen) != len(want) {
			t.Fatalf("%s: %d of %d transfers present", sink, len(seen), len(want))
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	var fileEvents, stdoutEvents, syslogEvents []audit.Event
	for {
		data, _ := os.ReadFile(file + ".1")
		data2, _ := os.ReadFile(file)
		var err error
		if fileEvents, err = audittest.DecodeJSONLines(append(data, data2...)); err != nil {
			t.Fatal(err)
		}
		stdoutEvents = stdoutOf(t, c.Proxy.Output())
		if syslogEvents, err = audittest.DecodeSyslog(rs.Lines()); err != nil {
			t.Fatal(err)
		}
		if len(fileEvents) >= len(want) && len(stdoutEvents) >= len(want) && len(syslogEvents) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	check("file", fileEvents)
	check("stdout", stdoutEvents)
	check("syslog", syslogEvents)
	newFile, _ := os.ReadFile(file)
	if ev, _ := audittest.DecodeJSONLines(newFile); len(ev) != 1 || ev[0].RequestID != rotatedID {
		t.Fatalf("after mv + SIGHUP the new file holds %d events, want the one transfer since", len(ev))
	}

	// No secret anywhere: tokens, signatures.
	resp, metrics := request(t, "GET", c.ProxyURL+"/metrics", "", nil, 0, nil)
	if resp.StatusCode != 200 {
		t.Fatal(resp.StatusCode)
	}
	old, _ := os.ReadFile(file + ".1")
	sinks := map[string]string{"file": string(old) + string(newFile), "proxy output (stdout sink and log)": c.Proxy.Output(),
		"syslog": strings.Join(rs.Lines(), "\n"), "metrics": metrics}
	for name, text := range sinks {
		for _, secret := range []string{testenv.TokenRW, testenv.TokenRO, testenv.TokenAdmin, testenv.WriteToken, testenv.AdminToken, "wrong-token-0123456789"} {
			if i := strings.Index(text, secret); i >= 0 {
				t.Errorf("%s contains %q: …%s…", name, secret, text[max(0, i-200):min(len(text), i+60)])
			}
		}
	}
	for name, text := range sinks {
		if sig := signatureRe.FindString(text); sig != "" {
			t.Errorf("%s contains the signature %s", name, sig)
		}
	}
	if metric(t, c, "keepgate_audit_dropped_total") != 0 {
		t.Error("events were dropped")
	}
}

// stdoutOf picks the audit events (JSON lines with a proxy_id) out of the
// proxy's output, where the JSON log lines are too.
func stdoutOf(t *testing.T, out string) []audit.Event {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, `{"time":`) && strings.Contains(l, `"proxy_id":`) {
			lines = append(lines, l)
		}
	}
	ev, err := audittest.DecodeJSONLines([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

var (
	blockRe     = regexp.MustCompile(`^[0-9a-f]{32}\+\d+$`)
	signatureRe = regexp.MustCompile(`\+A[0-9a-f]{40}@[0-9a-f]{8}`)
)
