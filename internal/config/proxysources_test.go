package config

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
)

func TestProxySources(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.yml")
	t.Setenv("ARVADOS_API_HOST", "")
	t.Setenv("ARVADOS_API_TOKEN", "")
	c, err := LoadKeepproxy(writeConf(t, "token_file: "+tokens+"\nstores: [{url: http://a:1}, {url: http://b:1}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Sources(); len(s.Auth) != 1 || s.Auth[0] != "token_file "+tokens || s.Stores != "2 configured in stores" {
		t.Fatalf("token file only: %+v", s)
	}
	// ARVADOS_API_HOST adds a source, and says so.
	t.Setenv("ARVADOS_API_HOST", "api.example:443")
	t.Setenv("ARVADOS_API_HOST_INSECURE", "1")
	c, _ = LoadKeepproxy(writeConf(t, "token_file: "+tokens+"\nstores: [{url: http://a:1}]\n"))
	if s := c.Sources(); len(s.Auth) != 2 || s.Auth[1] != "api api.example:443 (from ARVADOS_API_HOST, TLS not verified)" {
		t.Fatalf("with ARVADOS_API_HOST: %+v", s)
	}
	// api.host from the file; stores discovered.
	t.Setenv("ARVADOS_API_TOKEN", "secret-discovery-token")
	c, _ = LoadKeepproxy(writeConf(t, "api: {host: api.other:443}\n"))
	s := c.Sources()
	if len(s.Auth) != 1 || s.Auth[0] != "api api.other:443 (from api.host, TLS not verified)" ||
		s.Stores != "discovered from api.other:443 every 5m0s (discovery token from ARVADOS_API_TOKEN)" {
		t.Fatalf("discovery: %+v", s)
	}
	if strings.Contains(strings.Join(append(s.Auth, s.Stores), " "), "secret-discovery-token") {
		t.Fatal("a token in the sources")
	}
}

// keepproxy logs its sources at start, on stderr, as one JSON line.
func TestKeepproxyLogsSources(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs keepproxy")
	}
	dir := t.TempDir()
	tokens := testenv.WriteFile(t, dir, "tokens.yml", "tokens:\n  - name: a\n    token: sources-test-token-0123456789\n    scopes: [read]\n")
	addr := testenv.FreeAddr(t)
	cfg := testenv.WriteFile(t, dir, "keepproxy.yml", "listen: "+addr+"\ntoken_file: "+tokens+"\nstores: [{url: \"http://127.0.0.1:9\"}]\n")
	p := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-config", cfg},
		"ARVADOS_API_HOST=api.example:443", "ARVADOS_API_TOKEN=sources-secret-api-token")
	testenv.WaitHTTP(t, "http://"+addr+"/_health/ping", 0, p)
	var line struct {
		Msg   string   `json:"msg"`
		Auth  []string `json:"auth_sources"`
		Store string   `json:"store_source"`
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		for _, l := range strings.Split(p.Output(), "\n") {
			if strings.Contains(l, "authentication and store sources") {
				if err := json.Unmarshal([]byte(l), &line); err != nil {
					t.Fatalf("%v: %s", err, l)
				}
			}
		}
		if line.Msg != "" || time.Now().After(deadline) {
			break
		}
	}
	want := []string{"token_file " + tokens, "api api.example:443 (from ARVADOS_API_HOST)"}
	if strings.Join(line.Auth, "|") != strings.Join(want, "|") || line.Store != "1 configured in stores" {
		t.Fatalf("sources line: %+v, want auth %q\n%s", line, want, p.Output())
	}
	if out := p.Output(); strings.Contains(out, "sources-secret-api-token") || strings.Contains(out, "sources-test-token-0123456789") {
		t.Fatalf("a token in the log:\n%s", out)
	}
}

// keepproxy -h names every environment variable keepproxy reads.
func TestKeepproxyHelpNamesEnvironment(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs keepproxy")
	}
	p := testenv.Start(t, testenv.Build(t, "keepproxy"), []string{"-h"})
	if err, exited := p.Wait(10 * time.Second); !exited || err != nil {
		t.Fatalf("keepproxy -h: exited=%v err=%v", exited, err)
	}
	for _, v := range []string{KeepproxyEnvPrefix + "_<KEY>", "ARVADOS_API_HOST ", "ARVADOS_API_TOKEN", "ARVADOS_API_HOST_INSECURE", "HTTPS_PROXY"} {
		if !p.Contains(v) {
			t.Errorf("keepproxy -h does not mention %s:\n%s", v, p.Output())
		}
	}
}
