package config

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The shipped example configurations must load as they are.
func TestExampleConfigsLoad(t *testing.T) {
	kp, err := LoadKeepproxy("../../config/keepproxy.example.yml")
	if err != nil {
		t.Fatalf("keepproxy example: %v", err)
	}
	if kp.Listen != "127.0.0.1:25107" || len(kp.Stores) != 2 || kp.PutWindow != 4<<20 || kp.TokenCacheTTL != 5*time.Minute ||
		kp.StoreWriteTokenFile == "" || kp.ServerLimits != DefaultKeepproxy().ServerLimits {
		t.Fatalf("keepproxy example loaded as %+v", kp)
	}
	// The keepproxy example mentions every key, nested ones too.
	kb, _ := os.ReadFile("../../config/keepproxy.example.yml")
	for _, key := range structKeys(reflect.TypeOf(Keepproxy{})) {
		if !strings.Contains(string(kb), key+":") {
			t.Errorf("the keepproxy example does not mention %q", key)
		}
	}
	if _, err := LoadKeepstore("../../config/keepstore.example.yml"); err != nil {
		t.Fatalf("keepstore example: %v", err)
	}
	// The commented S3 volume, uncommented, loads too.
	b, err := os.ReadFile("../../config/keepstore.example.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`(?m)^  # (- driver: S3|  )`).ReplaceAllString(string(b), "  $1")
	if !strings.Contains(text, "\n  - driver: S3\n") {
		t.Fatal("could not uncomment the S3 example")
	}
	p := filepath.Join(t.TempDir(), "ks.yml")
	os.WriteFile(p, []byte(text), 0o600)
	c, err := LoadKeepstore(p)
	if err != nil {
		t.Fatalf("keepstore example with S3: %v", err)
	}
	last := c.Volumes[len(c.Volumes)-1]
	if last.Driver != "S3" || last.S3.Bucket != "keep-zzzzz" || !last.S3.UseTLS || last.UUID == "" {
		t.Fatalf("S3 volume loaded as %+v", last)
	}
}

func TestKeepproxyConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ yaml, want string }{
		{"stores: [{url: http://a:1}]\n", "no token source"},
		{"token_file: /x\n", "stores:"},
		{"token_file: /x\nstores: [{url: ftp://a}]\n", "must be an http"},
		{"token_file: /x\nstores: [{url: http://a:1}]\nput_window: 1KiB\n", "put_window"},
		{"token_file: /x\nstores: [{url: http://a:1}]\nstorez: []\n", `unknown key "storez"`},
	} {
		p := filepath.Join(dir, "kp.yml")
		os.WriteFile(p, []byte(tc.yaml), 0o600)
		_, err := LoadKeepproxy(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
	t.Setenv("ARVADOS_API_HOST", "api.example:443")
	t.Setenv("KEEPPROXY_DEFAULT_REPLICAS", "3")
	c, err := LoadKeepproxy("")
	if err != nil || c.API.Host != "api.example:443" || c.DefaultReplicas != 3 {
		t.Fatalf("env-only config: %+v %v", c, err)
	}
}
