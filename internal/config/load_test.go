package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testInner struct {
	Name  string        `mapstructure:"name"`
	Every time.Duration `mapstructure:"every"`
}

type testConf struct {
	Listen string        `mapstructure:"listen"`
	TTL    time.Duration `mapstructure:"signature_ttl"`
	Size   ByteSize      `mapstructure:"size"`
	On     bool          `mapstructure:"on"`
	Maybe  *bool         `mapstructure:"maybe"`
	Nets   []string      `mapstructure:"nets"`
	Inner  testInner     `mapstructure:"inner"`
	Items  []testInner   `mapstructure:"items"`
}

func writeConf(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsFileEnv(t *testing.T) {
	p := writeConf(t, `
listen: 127.0.0.1:1
size: 64MiB
nets: [10.0.0.0/8]
inner:
  name: fromfile
items:
  - name: a
    every: 90s
`)
	c := testConf{TTL: time.Hour, Size: 5, On: true, Inner: testInner{Every: time.Minute}}
	if err := Load(p, "TESTX", &c); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:1" || c.TTL != time.Hour || c.Size != 64<<20 || !c.On || c.Maybe != nil {
		t.Fatalf("got %+v", c)
	}
	if c.Inner.Name != "fromfile" || c.Inner.Every != time.Minute {
		t.Fatalf("nested: got %+v", c.Inner)
	}
	if len(c.Items) != 1 || c.Items[0].Name != "a" || c.Items[0].Every != 90*time.Second {
		t.Fatalf("items: got %+v", c.Items)
	}
	if len(c.Nets) != 1 || c.Nets[0] != "10.0.0.0/8" {
		t.Fatalf("nets: got %v", c.Nets)
	}

	// The environment wins over the file, for every key, nested ones too.
	t.Setenv("TESTX_LISTEN", "127.0.0.1:2")
	t.Setenv("TESTX_SIGNATURE_TTL", "2h")
	t.Setenv("TESTX_SIZE", "1GiB")
	t.Setenv("TESTX_ON", "false")
	t.Setenv("TESTX_MAYBE", "true")
	t.Setenv("TESTX_NETS", "127.0.0.1, 10.1.0.0/16")
	t.Setenv("TESTX_INNER_EVERY", "3s")
	t.Setenv("TESTX_ITEMS", `[{"name":"x","every":"1m"},{"name":"y"}]`)
	c = testConf{TTL: time.Hour, On: true}
	if err := Load(p, "TESTX", &c); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:2" || c.TTL != 2*time.Hour || c.Size != 1<<30 || c.On || c.Maybe == nil || !*c.Maybe {
		t.Fatalf("env: got %+v", c)
	}
	if strings.Join(c.Nets, "|") != "127.0.0.1|10.1.0.0/16" {
		t.Fatalf("env nets: %q", c.Nets)
	}
	if c.Inner.Every != 3*time.Second || c.Inner.Name != "fromfile" {
		t.Fatalf("env nested: %+v", c.Inner)
	}
	if len(c.Items) != 2 || c.Items[0].Every != time.Minute || c.Items[1].Name != "y" {
		t.Fatalf("env items: %+v", c.Items)
	}

	// Without a file, the environment alone.
	c = testConf{}
	if err := Load("", "TESTX", &c); err != nil || c.Listen != "127.0.0.1:2" {
		t.Fatalf("env only: %v %+v", err, c)
	}
}

func TestLoadUnknownKeys(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{"listen: x\nvolumez: []\n", `unknown key "volumez"`},
		{"inner:\n  nmae: x\n", `unknown key "inner.nmae"`},
		{"items:\n  - name: a\n    evry: 1s\n", `unknown key "items[0].evry"`},
		{"a: 1\nb: 2\n", `unknown keys "a", "b"`},
	} {
		p := writeConf(t, tc.body)
		var c testConf
		err := Load(p, "TESTY", &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%q: want error with %s and the file name, got %v", tc.body, tc.want, err)
		}
	}
}

func TestLoadBadValues(t *testing.T) {
	for _, body := range []string{"signature_ttl: forever\n", "size: 12 parsecs\n", "listen: [\n"} {
		var c testConf
		if err := Load(writeConf(t, body), "TESTZ", &c); err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: want a one-line error, got %v", body, err)
		}
	}
	if err := Load(filepath.Join(t.TempDir(), "missing.yml"), "TESTZ", &testConf{}); err == nil {
		t.Error("missing file: no error")
	}
	if err := Load("", "TESTZ", testConf{}); err == nil {
		t.Error("non-pointer: no error")
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1000": 1000, "64MiB": 64 << 20, "1k": 1000, "1KiB": 1024,
		"2 GiB": 2 << 30, "1.5MiB": 3 << 19, "3tb": 3e12, "-1": -1, "-2KiB": -2048} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err != nil || int64(b) != want {
			t.Errorf("%q: got %d %v, want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "--1", "-", "1 parsec", "99999999999TiB"} {
		var b ByteSize
		if err := b.UnmarshalText([]byte(in)); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
	if s := ByteSize(256 << 20).String(); s != "256MiB" {
		t.Errorf("String: %s", s)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tok")
	os.WriteFile(p, []byte("  s3cret\n"), 0o600)
	if s, err := ReadSecretFile(p); err != nil || s != "s3cret" {
		t.Fatalf("got %q %v", s, err)
	}
	os.WriteFile(p, []byte(" \n"), 0o600)
	if _, err := ReadSecretFile(p); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty: %v", err)
	}
	os.WriteFile(p, []byte("a\nb\n"), 0o600)
	if _, err := ReadSecretFile(p); err == nil {
		t.Fatal("two lines: no error")
	}
	os.WriteFile(p, []byte("x"), 0o600)
	os.Chmod(p, 0o644)
	if _, err := ReadSecretFile(p); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable: %v", err)
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "nope")); err == nil {
		t.Fatal("missing: no error")
	}
	if _, err := ReadSecretFile(dir); err == nil {
		t.Fatal("directory: no error")
	}
}
