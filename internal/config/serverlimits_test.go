package config

import (
	"strings"
	"testing"
	"time"
)

func TestServerLimitsDefaultsAndOverrides(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\nstores: [{url: http://a:1}]\n"
	c, err := LoadKeepproxy(writeConf(t, base))
	if err != nil {
		t.Fatal(err)
	}
	want := ServerLimits{MaxHeaderBytes: 32 << 10, MaxHeaderFields: 100, MaxConnections: 4096, MaxConnectionsPerClient: 256,
		IdleTimeout: 30 * time.Second, RequestHeaderTimeout: 10 * time.Second}
	if c.ServerLimits != want || c.SignatureTTL != 336*time.Hour {
		t.Fatalf("keepproxy defaults: %+v", c.ServerLimits)
	}
	t.Setenv("KEEPPROXY_MAX_CONNECTIONS", "1000")
	t.Setenv("KEEPPROXY_MAX_HEADER_BYTES", "16KiB")
	c, err = LoadKeepproxy(writeConf(t, base+"idle_timeout: 5s\nmax_connections_per_client: 0\n"))
	if err != nil || c.MaxConnections != 1000 || c.MaxHeaderBytes != 16<<10 || c.IdleTimeout != 5*time.Second || c.MaxConnectionsPerClient != 0 {
		t.Fatalf("overrides: %+v %v", c, err)
	}

	ks := DefaultKeepstore().ServerLimits
	if ks.MaxConnectionsPerClient != 0 || ks.IdleTimeout != 2*time.Minute || ks.MaxHeaderBytes != 32<<10 || ks.MaxConnections != 4096 {
		t.Fatalf("keepstore defaults: %+v", ks)
	}
}

func TestServerLimitsAndWriteTokenErrors(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\nstores: [{url: http://a:1}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{"max_header_bytes: 1MiB\n", ""},
		{"max_header_bytes: 2MiB\n", "max_header_bytes 2MiB: must be between 4KiB and 1MiB"},
		{"max_header_bytes: 1KiB\n", "max_header_bytes"},
		{"max_header_fields: 5\n", "max_header_fields 5"},
		{"max_connections: 0\n", "max_connections 0: must be at least 16"},
		{"max_connections_per_client: -1\n", "max_connections_per_client -1"},
		{"max_connections: 100\nmax_connections_per_client: 200\n", "more than max_connections"},
		{"idle_timeout: 0s\n", "idle_timeout 0s: must be positive"},
		{"request_header_timeout: 0s\n", "request_header_timeout 0s: must be positive"},
		{"store_write_token_file: /w\n", "store_write_token_file and blob_signing_key_file must be set together"},
		{"blob_signing_key_file: /k\n", "store_write_token_file and blob_signing_key_file must be set together"},
		{"store_write_token_file: /w\nblob_signing_key_file: /k\n", ""},
		{"signature_ttl: 1.5s\n", "signature_ttl"},
	} {
		_, err := LoadKeepproxy(writeConf(t, base+tc.yaml))
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("keepproxy %q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	ksBase := "listen: 127.0.0.1:25108\nvolumes: [{driver: Directory, directory: {root: /tmp}}]\n"
	for _, tc := range []struct{ yaml, want string }{
		{"max_connections: 8\n", "max_connections 8"},
		{"max_header_fields: 20000\n", "max_header_fields 20000"},
		{"idle_timeout: -1s\n", "idle_timeout"},
	} {
		_, err := LoadKeepstore(writeConf(t, ksBase+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("keepstore %q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestFairShareKeys(t *testing.T) {
	t.Setenv("ARVADOS_API_HOST", "")
	base := "token_file: /x\nstores: [{url: http://a:1}]\n"
	c, err := LoadKeepproxy(writeConf(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ClientMemoryShare != 0 || c.StoreSlots != 256 || c.ClientStoreSlots != 0 || c.MinBodyRate != 16<<10 || c.BodyGrace != 30*time.Second {
		t.Fatalf("defaults: share %v slots %d/%d rate %v grace %v", c.ClientMemoryShare, c.StoreSlots, c.ClientStoreSlots, c.MinBodyRate, c.BodyGrace)
	}
	c, err = LoadKeepproxy(writeConf(t, base+"client_memory_share: 32MiB\nstore_slots: 64\nclient_store_slots: 8\nmin_body_rate: 1KiB\nbody_grace: 1m\n"))
	if err != nil || c.ClientMemoryShare != 32<<20 || c.StoreSlots != 64 || c.ClientStoreSlots != 8 || c.MinBodyRate != 1<<10 || c.BodyGrace != time.Minute {
		t.Fatalf("set: %v %+v", err, c)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"client_memory_share: 2MiB\n", "client_memory_share 2MiB: must be 0 (a quarter of memory_budget) or between put_window + 1MiB (5MiB)"},
		{"client_memory_share: 1GiB\n", "and memory_budget (256MiB)"},
		{"store_slots: 0\n", "store_slots 0: must be at least 1"},
		{"store_slots: 8\nclient_store_slots: 9\n", "client_store_slots 9"},
		{"client_store_slots: -1\n", "client_store_slots -1"},
		{"min_body_rate: 0\n", "min_body_rate 0: must be positive"},
		{"body_grace: 0s\n", "body_grace: must be positive"},
	} {
		_, err := LoadKeepproxy(writeConf(t, base+tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
