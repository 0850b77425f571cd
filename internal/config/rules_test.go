package config

import (
	"strings"
	"testing"
)

func TestRulesConfig(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\nstorages:\n  a: {stores: [http://a:1]}\n  b: {stores: [http://b:1]}\ndefault_storage: a\n"
	c, err := LoadKeepproxy(writeConf(t, base+`rules:
  - hosts: [Keep.A.Example.org., "*.a.example.org"]
    storages: [a]
    cors_origins: [https://upload.a.example.org]
  - name: tenant-b
    hosts: ["keep.b.example.org:443"]
    storages: [b, a]
    default_storage: b
unknown_host: tenant-b
`))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Rules
	if len(r) != 2 || r[0].Name != "keep.a.example.org" || r[0].Hosts[0] != "keep.a.example.org" || r[0].DefaultStorage != "a" || r[1].Hosts[0] != "keep.b.example.org" || c.UnknownHost != "tenant-b" {
		t.Fatalf("%+v %q", r, c.UnknownHost)
	}
	if c, err := LoadKeepproxy(writeConf(t, base+"rules:\n  - hosts: [x.org]\n    storages: [a]\n")); err != nil || c.UnknownHost != "reject" {
		t.Fatalf("unknown_host defaults to reject: %v %q", err, c.UnknownHost)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"rules:\n  - hosts: [x.org]\n    storages: [a]\n  - hosts: [X.org]\n    storages: [b]\n", `"X.org": already claimed by rule x.org`},
		{"rules:\n  - hosts: [x.org]\n    storages: [z]\n", `rule x.org: storage "z" is not configured`},
		{"rules:\n  - hosts: [a.*.org]\n    storages: [a]\n", `a wildcard "*." in front only`},
		{"rules:\n  - hosts: [\"*.\"]\n    storages: [a]\n", "a wildcard"},
		{"rules:\n  - hosts: []\n    storages: [a]\n", "rules[0].hosts: list the names"},
		{"rules:\n  - hosts: [x.org]\n    storages: []\n", "rule x.org: storages: list"},
		{"rules:\n  - hosts: [x.org]\n    storages: [a]\n    default_storage: b\n", `default_storage "b" is not one of its storages`},
		{"rules:\n  - hosts: [x.org]\n    storages: [a]\nunknown_host: y\n", `unknown_host "y"`},
		{"unknown_host: y\n", "no rules are configured"},
	} {
		if _, err := LoadKeepproxy(writeConf(t, base+tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
