package config

import (
	"os"
	"path/filepath"
	"testing"
)

// A store URL keeps its spelling for the synthetic UUID (Arvados hashes the
// InternalURLs key as written) while requests use it without the slash.
func TestProxyStoreURLAsWritten(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keepproxy.yml")
	cfg := "listen: 127.0.0.1:25107\ntoken_file: /x\nstores:\n  - url: http://10.0.0.5:25108/\n  - url: http://10.0.0.6:25108\n"
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadKeepproxy(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Stores[0]; s.URL != "http://10.0.0.5:25108" || s.AsWritten != "http://10.0.0.5:25108/" {
		t.Errorf("with slash: URL %q AsWritten %q", s.URL, s.AsWritten)
	}
	if s := c.Stores[1]; s.URL != "http://10.0.0.6:25108" || s.AsWritten != "http://10.0.0.6:25108" {
		t.Errorf("without slash: URL %q AsWritten %q", s.URL, s.AsWritten)
	}
}
