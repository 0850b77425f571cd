package main

import (
	"bytes"
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/admin"
	"github.com/keepgate/keepgate/state/sqlite"
)

func startAdmin(t *testing.T) (string, string) {
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
	return srv.URL, tf
}

func cli(t *testing.T, url, tokenFile string, args ...string) (string, error) {
	var out bytes.Buffer
	err := run(append([]string{"--admin-url", url, "--admin-token-file", tokenFile}, args...), &out)
	return out.String(), err
}

func TestKeysVerbs(t *testing.T) {
	url, tf := startAdmin(t)
	out, err := cli(t, url, tf, "keys", "create", "--storage", "tenant-a", "--id", "lab-a", "--rate-cap", "400Mbit", "--max-concurrent", "8", "--description", "lab A")
	m := regexp.MustCompile(`secret: ([a-z0-9]{50})`).FindStringSubmatch(out)
	if err != nil || m == nil || !strings.Contains(out, "token:  v2/lab-a/"+m[1]) {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if out, err = cli(t, url, tf, "keys", "list"); err != nil || !strings.Contains(out, "lab-a") || !strings.Contains(out, "active") || strings.Contains(out, m[1]) {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err = cli(t, url, tf, "keys", "show", "lab-a"); err != nil || !strings.Contains(out, "rate cap (out):  400000kbit/s") || !strings.Contains(out, "max concurrent:  8") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if out, err = cli(t, url, tf, "keys", "update", "lab-a", "--disable", "--scopes", "read"); err != nil || !strings.Contains(out, "disabled") || !strings.Contains(out, "scopes:          read\n") {
		t.Fatalf("update: %v\n%s", err, out)
	}
	if out, err = cli(t, url, tf, "keys", "rotate", "lab-a", "--overlap", "24h"); err != nil || !strings.Contains(out, "the previous secret works until") {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	if out, err = cli(t, url, tf, "--json", "keys", "show", "lab-a"); err != nil || !strings.HasPrefix(out, "{") {
		t.Fatalf("--json show: %v\n%s", err, out)
	}
	if out, err = cli(t, url, tf, "keys", "revoke", "lab-a"); err != nil || !strings.Contains(out, "revoked access key lab-a") {
		t.Fatalf("revoke: %v\n%s", err, out)
	}
	// Refusals: exit 1 with the API's message; bad usage: exit 2.
	_, err = cli(t, url, tf, "keys", "revoke", "lab-a")
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "404 no such access key") {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err = cli(t, url, tf, "keys", "create", "--storage", "nope"); err == nil || !strings.Contains(err.Error(), `storage \"nope\" is not configured`) && !strings.Contains(err.Error(), `storage "nope" is not configured`) {
		t.Fatalf("unknown storage: %v", err)
	}
	for _, args := range [][]string{{"keys"}, {"keys", "frobnicate"}, {"keys", "create"}, {"keys", "show"}, {"keys", "create", "--storage", "a", "--rate-cap", "fast"}, {"keys", "update", "lab-a"}} {
		if _, err := cli(t, url, tf, args...); !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}
	wrong := filepath.Join(t.TempDir(), "wrong")
	os.WriteFile(wrong, []byte("nope"), 0o600)
	if _, err := cli(t, url, wrong, "keys", "list"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong admin token: %v", err)
	}
}

func TestParseRate(t *testing.T) {
	for in, want := range map[string]int64{"400Mbit": 400000, "1.5Gbit": 1500000, "800kbit": 800, "0": 0, "2000bit": 2} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("%s: %d %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"fast", "-1Mbit", "10MB", ""} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
