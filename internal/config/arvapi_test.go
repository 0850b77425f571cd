package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArvadosAPIConfig(t *testing.T) {
	dir := t.TempDir()
	base := "token_file: /x\nstores: [{url: http://a:1}]\n"
	full := base + "store_write_token_file: /w\nblob_signing_key_file: /k\nstate: {path: /s.db, pepper_file: /p}\n"
	for _, tc := range []struct{ yaml, want string }{
		{base + "arvados_api: {enabled: true}\n", "set state.path"},
		{base + "arvados_api: {enabled: true}\n", "blob_signing_key_file"},
		{full + "arvados_api: {enabled: true, uuid_prefix: TOOLONG}\n", "uuid_prefix"},
		{full + "arvados_api: {enabled: true, max_request_size: 1KiB}\n", "max_request_size"},
		{full + "arvados_api: {enabled: true, trash_lifetime: -1h}\n", "trash_lifetime"},
		{full + "arvados_api: {enabled: true, typo: 1}\n", `unknown key "arvados_api.typo"`},
	} {
		p := filepath.Join(dir, "kp.yml")
		os.WriteFile(p, []byte(tc.yaml), 0o600)
		c, err := LoadKeepproxy(p)
		if err == nil {
			err = c.ValidateArvadosAPI()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want it to mention %q", tc.yaml, err, tc.want)
		}
	}
	p := filepath.Join(dir, "ok.yml")
	os.WriteFile(p, []byte(full+"cluster_id: abcde\narvados_api: {enabled: true, max_request_size: 8MiB}\n"), 0o600)
	c, err := LoadKeepproxy(p)
	if err != nil || c.ValidateArvadosAPI() != nil || c.ArvadosUUIDPrefix() != "abcde" || c.ArvadosAPI.MaxRequestSize != 8<<20 {
		t.Fatalf("valid config: %v %+v", err, c)
	}
	if off, _ := LoadKeepproxy(""); off != nil && off.ValidateArvadosAPI() != nil {
		t.Fatal("an API that is off needs nothing")
	}
}
