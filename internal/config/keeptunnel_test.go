package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The shipped keeptunnel example loads as it is and mentions every key.
func TestKeeptunnelExampleLoads(t *testing.T) {
	const path = "../../config/keeptunnel.example.yml"
	c, err := LoadKeeptunnel(path, KeeptunnelFlags{})
	if err != nil {
		t.Fatalf("keeptunnel example: %v", err)
	}
	def := DefaultKeeptunnel()
	if c.Server != "proxy.example.org:22" || c.User != "kgtunnel" || len(c.Forwards) != 1 || c.Forwards[0].Name != "lab1" ||
		c.KeepaliveInterval != 15*time.Second || c.KeepaliveCount != 3 || c.BackoffMin != def.BackoffMin || c.BackoffMax != def.BackoffMax ||
		c.BackoffReset != time.Minute || c.HealthListen != def.HealthListen {
		t.Fatalf("keeptunnel example loaded as %+v", c)
	}
	b, _ := os.ReadFile(path)
	for _, key := range structKeys(reflect.TypeOf(Keeptunnel{})) {
		if !strings.Contains(string(b), key+":") {
			t.Errorf("the keeptunnel example does not mention %q", key)
		}
	}
}

func TestKeeptunnelConfig(t *testing.T) {
	dir := t.TempDir()
	base := "server: proxy.example\nidentity_file: /k\nknown_hosts_file: /kh\n"
	load := func(yaml string, f KeeptunnelFlags) (*Keeptunnel, error) {
		p := filepath.Join(dir, "kt.yml")
		os.WriteFile(p, []byte(yaml), 0o600)
		return LoadKeeptunnel(p, f)
	}
	c, err := load(base+"forwards:\n  - {remote: /run/keepgate/tunnels/lab1/store.sock, local: 127.0.0.1:25108}\n  - {remote: 127.0.0.1:15000, local: 127.0.0.1:25109}\n", KeeptunnelFlags{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "proxy.example:22" || c.Forwards[0].Name != "store" || c.Forwards[1].Name != "tcp-15000" {
		t.Fatalf("derived values: %+v", c)
	}
	// Flags override the file; -forward replaces the list.
	c, err = load(base+"forwards:\n  - {remote: /a.sock, local: 127.0.0.1:1}\n", KeeptunnelFlags{Server: "[::1]:2222", Forwards: []string{"lab2:/run/x.sock=127.0.0.1:25108", "/run/y.sock=127.0.0.1:25109"}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Server != "[::1]:2222" || len(c.Forwards) != 2 || c.Forwards[0].Name != "lab2" || c.Forwards[0].Remote != "/run/x.sock" || c.Forwards[1].Name != "y" {
		t.Fatalf("flags: %+v", c)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"identity_file: /k\nknown_hosts_file: /kh\nforwards: [{remote: /a.sock, local: 127.0.0.1:1}]\n", "server: required"},
		{"server: p\nidentity_file: /k\nforwards: [{remote: /a.sock, local: 127.0.0.1:1}]\n", "known_hosts_file: required"},
		{base, "forwards: list at least one"},
		{base + "forwards: [{remote: relative.sock, local: 127.0.0.1:1}]\n", "absolute unix socket path"},
		{base + "forwards: [{remote: /a//b.sock, local: 127.0.0.1:1}]\n", "clean form"},
		{base + "forwards: [{remote: /" + strings.Repeat("x", 120) + ", local: 127.0.0.1:1}]\n", "at most 107 bytes"},
		{base + "forwards: [{remote: /a.sock, local: nowhere}]\n", "local \"nowhere\""},
		{base + "forwards: [{remote: /a.sock, local: 127.0.0.1:1}, {remote: /b/a.sock, local: 127.0.0.1:2}]\n", "used twice"},
		{base + "forwards: [{remote: /a.sock, local: 127.0.0.1:1}]\nkeepalive_interval: 100ms\n", "keepalive_interval"},
		{base + "forwards: [{remote: /a.sock, local: 127.0.0.1:1}]\nkeepalive_count: 0\n", "keepalive_count"},
		{base + "forwards: [{remote: /a.sock, local: 127.0.0.1:1}]\nbackoff_max: 100ms\n", "backoff_max"},
		{base + "forwards: [{remote: /a.sock, local: 127.0.0.1:1}]\nhealth_listen: 0.0.0.0:25120\n", "loopback"},
		{base + "forwards: [{remote: /a.sock, local: 127.0.0.1:1}]\nforwardz: []\n", `unknown key "forwardz"`},
	} {
		if _, err := load(tc.yaml, KeeptunnelFlags{}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
	if _, err := load(base, KeeptunnelFlags{Forwards: []string{"no-equals-sign"}}); err == nil || !strings.Contains(err.Error(), "REMOTE=LOCAL") {
		t.Errorf("bad -forward: %v", err)
	}
	t.Setenv("KEEPTUNNEL_FORWARDS", `[{"remote":"/run/e.sock","local":"127.0.0.1:25108"}]`)
	t.Setenv("KEEPTUNNEL_KEEPALIVE_INTERVAL", "2s")
	c, err = load(base, KeeptunnelFlags{})
	if err != nil || len(c.Forwards) != 1 || c.Forwards[0].Name != "e" || c.KeepaliveInterval != 2*time.Second {
		t.Fatalf("environment: %+v %v", c, err)
	}
}

// keepproxy lists stores behind a tunnel as http+unix:///socket.
func TestKeepproxyUnixStoreURL(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "kp.yml")
	os.WriteFile(p, []byte("token_file: /x\nstores:\n  - url: http+unix:///run/keepgate/tunnels/lab1/store.sock\n  - url: http://10.0.0.6:25108\n"), 0o600)
	c, err := LoadKeepproxy(p)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stores[0]; s.URL != "http+unix:///run/keepgate/tunnels/lab1/store.sock" || s.AsWritten != s.URL {
		t.Fatalf("unix store: %+v", s)
	}
	for _, bad := range []string{"http+unix://host/run/x.sock", "http+unix://relative.sock", "http+unix:///run/x.sock?a=b"} {
		os.WriteFile(p, []byte("token_file: /x\nstores:\n  - url: "+bad+"\n"), 0o600)
		if _, err := LoadKeepproxy(p); err == nil || !strings.Contains(err.Error(), "http+unix") {
			t.Errorf("%s: error %v", bad, err)
		}
	}
}
