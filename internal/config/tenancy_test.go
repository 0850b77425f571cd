package config

import (
	"strings"
	"testing"
	"time"
)

func TestStoragesConfig(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\n"
	c, err := LoadKeepproxy(writeConf(t, base+`storages:
  tenant-a: {stores: [http://a:1, "http://b:1/"], classes: [default], default_replicas: 2, max_replicas: 3}
  archive: {stores: [http://c:1]}
default_storage: tenant-a
state: {path: /tmp/x.db, pepper_file: /tmp/pepper}
admin: {token_file: /tmp/admin}
store_write_token_file: /w
blob_signing_key_file: /k
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Stores) != 3 || c.Stores[2].URL != "http://b:1" || c.Stores[2].AsWritten != "http://b:1/" || c.DefaultStorage != "tenant-a" ||
		c.Storages["tenant-a"].MaxReplicas != 3 || strings.Join(c.StorageNames(), ",") != "archive,tenant-a" || c.Admin.Listen != "127.0.0.1:25110" || c.State.Driver != "sqlite" {
		t.Fatalf("%+v", c)
	}
	one, err := LoadKeepproxy(writeConf(t, base+"storages:\n  only: {stores: [http://a:1]}\n"))
	if err != nil || one.DefaultStorage != "only" {
		t.Fatalf("one storage is the default: %v %q", err, one.DefaultStorage)
	}
	if _, err := LoadKeepproxy(writeConf(t, "state: {path: /tmp/x.db, pepper_file: /tmp/p}\nstores: [{url: http://a:1}]\nstore_write_token_file: /w\nblob_signing_key_file: /k\n")); err != nil {
		t.Fatalf("access keys alone are a token source: %v", err)
	}
	pg, err := LoadKeepproxy(writeConf(t, "stores: [{url: http://a:1}]\nstore_write_token_file: /w\nblob_signing_key_file: /k\nstate: {driver: postgres, dsn_file: /etc/keepgate/pg.dsn, pepper_file: /p, key_cache_ttl: 5s}\n"))
	if err != nil || !pg.State.Enabled() || pg.State.KeyCacheTTL != 5*time.Second || pg.State.UsageFlushInterval != 10*time.Second || pg.State.HeartbeatInterval != 2*time.Second {
		t.Fatalf("postgres state alone is a token source, with defaults: %v %+v", err, pg)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"storages:\n  a: {stores: [http://a:1]}\n  b: {stores: [http://b:1]}\n", "default_storage: required with several storages"},
		{"storages:\n  a: {stores: [http://a:1]}\ndefault_storage: z\n", `default_storage "z": not a configured storage; configured: a`},
		{"stores: [{url: http://a:1}]\ndefault_storage: z\n", "no storages are configured"},
		{"storages:\n  a: {stores: [http://a:1]}\n  b: {stores: [\"http://a:1/\"]}\ndefault_storage: a\n", "belongs to one storage only"},
		{"storages:\n  a: {stores: []}\n", "storages.a.stores: list the keepstores"},
		{"storages:\n  a: {stores: [ftp://a]}\n", "must be an http://"},
		{"storages:\n  a: {stores: [http://a:1], default_replicas: 4, max_replicas: 3}\n", "want 0 ≤ default ≤ max"},
		{"stores: [{url: http://a:1}]\nstate: {path: /tmp/x.db}\n", "state.pepper_file: required"},
		{"stores: [{url: http://a:1}]\nstate: {path: /tmp/x.db, pepper_file: /p}\n", "needs store_write_token_file and blob_signing_key_file"},
		{"stores: [{url: http://a:1}]\nadmin: {token_file: /tmp/a}\n", "need state.path"},
		{"stores: [{url: http://a:1}]\nstate: {path: /tmp/x.db, pepper_file: /p, driver: bolt}\n", `state.driver "bolt"`},
		{"stores: [{url: http://a:1}]\nstate: {driver: postgres, path: /tmp/x.db, pepper_file: /p}\n", "driver postgres takes state.dsn_file"},
		{"stores: [{url: http://a:1}]\nstate: {dsn_file: /tmp/dsn, pepper_file: /p}\n", "driver sqlite takes state.path"},
		{"stores: [{url: http://a:1}]\nstate: {driver: postgres, dsn_file: /tmp/dsn}\n", "state.pepper_file: required"},
		{"stores: [{url: http://a:1}]\nstate: {path: /tmp/x.db, pepper_file: /p, usage_flush_interval: 1ms}\n", "state.usage_flush_interval 1ms: want between"},
	} {
		if _, err := LoadKeepproxy(writeConf(t, base+tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestUpstreamStorageConfig(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\nstores: [{url: http://a:1}]\nblob_signing_key_file: /k\nstore_write_token_file: /w\n"
	c, err := LoadKeepproxy(writeConf(t, base+"storages:\n  partner: {upstream: https://keep.partner.example, identity: squashed, token_file: /t}\n  them: {upstream: http://10.0.0.9:25107, identity: individual}\ndefault_storage: partner\n"))
	if err != nil || !c.IndividualStorages()["them"] || c.IndividualStorages()["partner"] {
		t.Fatalf("%v %+v", err, c.Storages)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"storages:\n  p: {upstream: ftp://x, identity: individual}\n", "want the gateway's base URL"},
		{"storages:\n  p: {upstream: http://x:1/keep, identity: individual}\n", "want the gateway's base URL"},
		{"storages:\n  p: {upstream: http://x:1, identity: squashed}\n", "needs keepgate's own token"},
		{"storages:\n  p: {upstream: http://x:1, identity: individual, token_file: /t}\n", "remove token_file"},
		{"storages:\n  p: {upstream: http://x:1}\n", `identity ""`},
		{"storages:\n  p: {upstream: http://x:1, identity: individual, stores: [http://b:1]}\n", "not both"},
	} {
		if _, err := LoadKeepproxy(writeConf(t, base+tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
