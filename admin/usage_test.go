package admin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/sqlite"
)

func TestUsage(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "keepgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Date(2026, 12, 2, 12, 30, 0, 0, time.UTC)
	api := New(Options{Store: db, Hasher: access.Hasher{Pepper: []byte("pepper")}, Token: adminToken, Cluster: "zzzzz",
		Storage: []string{"tenant-a", "tenant-b"}, Now: func() time.Time { return now }})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	f := &fixture{url: srv.URL}
	if code, body, _ := f.do(t, "POST", "/access_keys", `{"id":"lab-a","storage":{"name":"tenant-a"}}`); code != 201 {
		t.Fatal(code, body)
	}
	row := func(key, storage string, hour time.Time, n int64) state.UsageRow {
		return state.UsageRow{AccessKey: key, Storage: storage, Hour: hour, BytesIn: n, BytesOut: 2 * n, Requests: 1}
	}
	h := now.Truncate(time.Hour)
	db.AddUsage(context.Background(), state.Flush{Proxy: "p1", Instance: "x", Seq: 1}, []state.UsageRow{
		row("lab-a", "tenant-a", h, 10), row("lab-a", "tenant-a", h.Add(-time.Hour), 5), row("rw", "tenant-a", h, 7),
		row("lab-a", "tenant-a", h.Add(-30*time.Hour), 100)})
	db.AddUsage(context.Background(), state.Flush{Proxy: "p2", Instance: "y", Seq: 1}, []state.UsageRow{row("lab-a", "tenant-a", h, 1)})

	var rows []UsageRow
	code, body, _ := f.do(t, "GET", "/usage", "")
	if json.Unmarshal([]byte(body), &rows); code != 200 || len(rows) != 3 || rows[1].AccessKey != "lab-a" || rows[1].BytesIn != 11 || rows[1].Hour != "2026-12-02T12:00:00Z" || rows[2].AccessKey != "rw" {
		t.Fatalf("default range (24 h): %d %s", code, body)
	}
	if !strings.Contains(body, `"replica_bytes_written": 0`) || !strings.Contains(body, `"errors_5xx": 0`) {
		t.Fatalf("members: %s", body)
	}
	code, body, _ = f.do(t, "GET", "/usage?access_key=lab-a&from=2026-12-01&granularity=day", "")
	if json.Unmarshal([]byte(body), &rows); code != 200 || len(rows) != 2 || rows[0].Hour != "2026-12-01T00:00:00Z" || rows[0].BytesIn != 100 || rows[1].BytesIn != 16 {
		t.Fatalf("daily: %d %s", code, body)
	}
	if code, body, _ = f.do(t, "GET", "/usage?storage=tenant-b", ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("no usage: %d %q", code, body)
	}
	if code, _, _ = f.do(t, "GET", "/usage?access_key=rw", ""); code != 200 {
		t.Fatalf("a token-file principal with usage: %d", code)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/usage?storage=tenant-a&from=2026-12-02T11:00:00Z", nil)
	req.SetBasicAuth("admin", adminToken)
	req.Header.Set("Accept", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	want := "storage,access_key,hour,bytes_in,bytes_out,blocks_in,blocks_out,replica_bytes_written,requests,errors_4xx,errors_5xx\n" +
		"tenant-a,lab-a,2026-12-02T11:00:00Z,5,10,0,0,0,1,0,0\ntenant-a,lab-a,2026-12-02T12:00:00Z,11,22,0,0,0,2,0,0\ntenant-a,rw,2026-12-02T12:00:00Z,7,14,0,0,0,1,0,0\n"
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || sb.String() != want {
		t.Fatalf("CSV: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), sb.String())
	}
	for q, msg := range map[string]string{
		"?from=yesterday":                                    `from "yesterday": want RFC 3339`,
		"?from=2026-12-03&to=2026-12-01":                     "is not before to",
		"?from=2026-12-02T12:00:00Z&to=2026-12-02T12:00:00Z": "is not before to",
		"?from=2020-01-01":                                   "over 93 days",
		"?storage=tenant-x":                                  `storage "tenant-x" is not configured; configured storages: tenant-a, tenant-b`,
		"?access_key=nobody":                                 `access_key "nobody": no such access key`,
		"?granularity=week":                                  `granularity "week": want hour or day`,
		"?store=tenant-a":                                    `unknown query parameter "store"`,
	} {
		code, body, _ := f.do(t, "GET", "/usage"+q, "")
		var e struct{ Error string }
		if json.Unmarshal([]byte(body), &e); code != 400 || !strings.Contains(e.Error, msg) {
			t.Errorf("%s: %d %s, want 400 %q", q, code, body, msg)
		}
	}
	if code, _, _ := f.do(t, "GET", "/usage", "", ""); code != 401 {
		t.Errorf("without the admin token: %d", code)
	}
}

func TestLimitBounds(t *testing.T) {
	f := start(t)
	for body, want := range map[string]string{
		`{"storage":{"name":"tenant-a"},"configuration":{"transfer":{"target_rate_cap_kbps":-1}}}`:            "target_rate_cap_kbps -1",
		`{"storage":{"name":"tenant-a"},"configuration":{"transfer":{"target_rate_in_cap_kbps":1000000000}}}`: "target_rate_in_cap_kbps 1000000000: rate caps are kbps",
		`{"storage":{"name":"tenant-a"},"configuration":{"transfer":{"max_concurrent_requests":1000000}}}`:    "max_concurrent_requests 1000000",
		`{"storage":{"name":"tenant-a"},"configuration":{"transfer":{"target_rate_cap_kbps":1.5}}}`:           "target_rate_cap_kbps",
	} {
		if code, got, _ := f.do(t, "POST", "/access_keys", body); code != 400 || !strings.Contains(got, want) {
			t.Errorf("%s: %d %s, want 400 %q", body, code, got, want)
		}
	}
	if code, body, _ := f.do(t, "POST", "/access_keys", `{"id":"capped","storage":{"name":"tenant-a"},"configuration":{"transfer":{"target_rate_cap_kbps":0,"max_concurrent_requests":8}}}`); code != 201 {
		t.Fatal(code, body)
	}
	if code, body, _ := f.do(t, "PATCH", "/access_keys/capped", `{"configuration":{"transfer":{"target_rate_cap_kbps":-5}}}`); code != 400 {
		t.Fatalf("PATCH with a negative cap: %d %s", code, body)
	}
	if code, body, _ := f.do(t, "PATCH", "/access_keys/capped", `{"configuration":{"transfer":{"target_rate_cap_kbps":400000}}}`); code != 200 || !strings.Contains(body, `"target_rate_cap_kbps": 400000`) {
		t.Fatalf("PATCH: %d %s", code, body)
	}
}
