package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestKeepstoreLoadAndDefaults(t *testing.T) {
	root := t.TempDir()
	p := writeConf(t, `
listen: 127.0.0.1:25108
volumes:
  - driver: Directory
    directory:
      root: `+root+`
`)
	c, err := LoadKeepstore(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.SignatureTTL != 336*time.Hour || c.TrashLifetime != 336*time.Hour || c.TrashCheckInterval != 24*time.Hour ||
		c.MemoryBudget != 256<<20 || c.MaxConcurrentRequests != 64 || c.BodyIdleTimeout != time.Minute || !c.TrashEnabled {
		t.Fatalf("defaults: %+v", c)
	}
	if c.RequireSignatures == nil || *c.RequireSignatures {
		t.Fatal("require_signatures should default to false without a key")
	}
	v := c.Volumes[0]
	if v.Replication != 1 || strings.Join(v.StorageClasses, ",") != "default" || *v.Priority != 0 || !volumeUUIDRe.MatchString(v.UUID) {
		t.Fatalf("volume defaults: %+v", v)
	}
	// The UUID is stable across loads.
	c2, _ := LoadKeepstore(p)
	if c2.Volumes[0].UUID != v.UUID {
		t.Fatal("generated UUID is not stable")
	}
	// The default allowed networks are the LAN ranges.
	allowed := c.AllowedPrefixes()
	for addr, want := range map[string]bool{"127.0.0.1": true, "10.1.2.3": true, "192.168.0.9": true, "::1": true, "8.8.8.8": false} {
		a := netip.MustParseAddr(addr)
		got := false
		for _, p := range allowed {
			got = got || p.Contains(a)
		}
		if got != want {
			t.Errorf("%s allowed=%v, want %v", addr, got, want)
		}
	}
}

func TestKeepstoreEnvOverride(t *testing.T) {
	root := t.TempDir()
	t.Setenv("KEEPSTORE_LISTEN", "127.0.0.1:9")
	t.Setenv("KEEPSTORE_SIGNATURE_TTL", "1h")
	t.Setenv("KEEPSTORE_MEMORY_BUDGET", "16MiB")
	t.Setenv("KEEPSTORE_VOLUMES", `[{"driver":"Directory","read_only":true,"directory":{"root":"`+root+`"}}]`)
	c, err := LoadKeepstore("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9" || c.SignatureTTL != time.Hour || c.MemoryBudget != 16<<20 || len(c.Volumes) != 1 || !c.Volumes[0].ReadOnly {
		t.Fatalf("got %+v", c)
	}
}

func TestKeepstoreValidate(t *testing.T) {
	root := t.TempDir()
	base := func() Keepstore {
		c := DefaultKeepstore()
		c.Listen = "127.0.0.1:25108"
		c.Volumes = []Volume{{Driver: "Directory", Directory: DirectoryVolume{Root: root}}}
		return c
	}
	for _, tc := range []struct {
		name string
		mod  func(*Keepstore)
		want string
	}{
		{"no listen", func(c *Keepstore) { c.Listen = "" }, "listen is required"},
		{"all interfaces", func(c *Keepstore) { c.Listen = ":25108" }, "all interfaces"},
		{"all interfaces v4", func(c *Keepstore) { c.Listen = "0.0.0.0:25108" }, "allow_all_interfaces"},
		{"bad port", func(c *Keepstore) { c.Listen = "127.0.0.1:http2x" }, "bad port"},
		{"no volumes", func(c *Keepstore) { c.Volumes = nil }, "at least one volume"},
		{"bad driver", func(c *Keepstore) { c.Volumes[0].Driver = "Tape" }, `driver "Tape" is not supported`},
		{"relative root", func(c *Keepstore) { c.Volumes[0].Directory.Root = "x/y" }, "absolute path"},
		{"bad uuid", func(c *Keepstore) { c.Volumes[0].UUID = "zzzzz-nyw5e-SHOUT" }, "uuid"},
		{"dup root", func(c *Keepstore) { c.Volumes = append(c.Volumes, c.Volumes[0]) }, "also volumes[0]"},
		{"undefined class", func(c *Keepstore) { c.Volumes[0].StorageClasses = []string{"gold"} }, `"gold" is not defined`},
		{"no default class", func(c *Keepstore) { c.StorageClasses = []StorageClass{{Name: "gold"}} }, "default: true"},
		{"signatures without key", func(c *Keepstore) { b := true; c.RequireSignatures = &b }, "blob_signing_key_file"},
		{"bad network", func(c *Keepstore) { c.AllowedNetworks = []string{"lan"} }, "allowed_networks"},
		{"tiny budget", func(c *Keepstore) { c.MemoryBudget = 1000 }, "memory_budget"},
		{"bad ttl", func(c *Keepstore) { c.SignatureTTL = 1500 * time.Millisecond }, "signature_ttl"},
		{"bad level", func(c *Keepstore) { c.LogLevel = "loud" }, "log_level"},
		{"bad replication", func(c *Keepstore) { c.Volumes[0].Replication = -1 }, "replication"},
	} {
		c := base()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: want error containing %q, got %v", tc.name, tc.want, err)
		}
	}
	c := base()
	c.Listen = "0.0.0.0:25108"
	c.AllowAllInterfaces = true
	if err := c.Validate(); err != nil {
		t.Errorf("allow_all_interfaces: %v", err)
	}
}

func TestKeepstoreClassesAndPriority(t *testing.T) {
	c := DefaultKeepstore()
	c.Listen = "127.0.0.1:25108"
	c.StorageClasses = []StorageClass{{Name: "default", Default: true}, {Name: "fast", Priority: 10}, {Name: "archive", Priority: -5}}
	seven := 7
	c.Volumes = []Volume{
		{Driver: "directory", Directory: DirectoryVolume{Root: "/a"}},
		{Driver: "Directory", StorageClasses: []string{"fast", "archive"}, Directory: DirectoryVolume{Root: "/b"}},
		{Driver: "Directory", StorageClasses: []string{"archive"}, Priority: &seven, Directory: DirectoryVolume{Root: "/c"}, UUID: "abcde-nyw5e-000000000000000"},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Volumes[0].Driver != "Directory" || strings.Join(c.Volumes[0].StorageClasses, ",") != "default" || *c.Volumes[0].Priority != 0 {
		t.Errorf("v0: %+v", c.Volumes[0])
	}
	if *c.Volumes[1].Priority != 10 || *c.Volumes[2].Priority != 7 || c.Volumes[2].UUID != "abcde-nyw5e-000000000000000" {
		t.Errorf("priorities/uuid: %d %d %s", *c.Volumes[1].Priority, *c.Volumes[2].Priority, c.Volumes[2].UUID)
	}
	if c.Volumes[0].UUID == c.Volumes[1].UUID {
		t.Error("generated UUIDs collide")
	}
}

func TestKeepstoreUnknownKeyAndSecrets(t *testing.T) {
	p := writeConf(t, "listen: 127.0.0.1:1\nvolumez: []\n")
	if _, err := LoadKeepstore(p); err == nil || !strings.Contains(err.Error(), `unknown key "volumez"`) {
		t.Fatalf("got %v", err)
	}
	dir := t.TempDir()
	c := DefaultKeepstore()
	c.AdminTokenFile = filepath.Join(dir, "admin")
	c.BlobSigningKeyFile = filepath.Join(dir, "key")
	os.WriteFile(c.AdminTokenFile, []byte("adm\n"), 0o600)
	os.WriteFile(c.BlobSigningKeyFile, []byte("short"), 0o600)
	if _, err := c.ReadSecrets(); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short key: %v", err)
	}
	os.WriteFile(c.BlobSigningKeyFile, []byte(strings.Repeat("k", 40)), 0o600)
	s, err := c.ReadSecrets()
	if err != nil || s.AdminToken != "adm" || len(s.BlobSigningKey) != 40 || s.ManagementToken != "" {
		t.Fatalf("got %+v %v", s, err)
	}
}

func TestKeepstoreExampleConfig(t *testing.T) {
	p := filepath.Join("..", "..", "config", "keepstore.example.yml")
	c := DefaultKeepstore()
	if err := Load(p, "KEEPSTORE_EXAMPLE_TEST", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "10.0.0.5:25108" || c.WriteTokenFile == "" || c.ServerLimits != DefaultKeepstore().ServerLimits || len(c.Volumes) != 1 || c.Volumes[0].Directory.Root != "/srv/keep0" || c.SignatureTTL != 336*time.Hour {
		t.Fatalf("example config: %+v", c)
	}
	// The example mentions every key of the struct, nested ones too.
	b, _ := os.ReadFile(p)
	for _, key := range structKeys(reflect.TypeOf(Keepstore{})) {
		if !strings.Contains(string(b), key+":") {
			t.Errorf("the example does not mention %q", key)
		}
	}
}

// structKeys lists the mapstructure keys of t, of its nested structs and
// of the elements of its lists of structs.
func structKeys(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, squash := tagName(f)
		if !f.IsExported() || name == "-" {
			continue
		}
		if squash {
			out = append(out, structKeys(f.Type)...)
			continue
		}
		out = append(out, name)
		ft := f.Type
		for ft.Kind() == reflect.Slice || ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if isPlainStruct(ft) {
			out = append(out, structKeys(ft)...)
		}
	}
	return out
}
