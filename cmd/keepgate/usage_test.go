package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/admin"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/sqlite"
)

func TestUsageVerb(t *testing.T) {
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	api := admin.New(admin.Options{Store: db, Hasher: access.Hasher{Pepper: []byte("p")}, Token: "tok-0123456789", Cluster: "zzzzz", Storage: []string{"tenant-a"}})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	tf := filepath.Join(t.TempDir(), "admin.token")
	os.WriteFile(tf, []byte("tok-0123456789\n"), 0o600)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	db.AddUsage(context.Background(), state.Flush{Proxy: "p", Instance: "i", Seq: 1}, []state.UsageRow{
		{AccessKey: "rw", Storage: "tenant-a", Hour: day, BytesIn: 1234, BytesOut: 99, Requests: 3}})
	out, err := cli(t, srv.URL, tf, "usage", "--storage", "tenant-a", "--from", day.Format(time.DateOnly), "--granularity", "day")
	if err != nil || !strings.Contains(out, "DAY") || !strings.Contains(out, day.Format(time.RFC3339)) || !strings.Contains(out, "1234") {
		t.Fatalf("usage: %v\n%s", err, out)
	}
	out, err = cli(t, srv.URL, tf, "usage", "--storage", "tenant-a", "--from", day.Format(time.DateOnly), "--granularity", "day", "--csv")
	if err != nil || !strings.HasPrefix(out, "storage,access_key,hour,bytes_in") || !strings.Contains(out, "tenant-a,rw,"+day.Format(time.RFC3339)+",1234,99,") {
		t.Fatalf("usage --csv: %v\n%s", err, out)
	}
	if out, err = cli(t, srv.URL, tf, "--json", "usage"); err != nil || !strings.HasPrefix(out, "[") {
		t.Fatalf("--json usage: %v\n%s", err, out)
	}
	if _, err = cli(t, srv.URL, tf, "usage", "--storage", "nope"); err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("unknown storage: %v", err)
	}
	var ue usageError
	for _, args := range [][]string{{"usage", "--granularity", "week"}, {"usage", "extra"}, {"usage", "--frm", "x"}} {
		if _, err := cli(t, srv.URL, tf, args...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
}
