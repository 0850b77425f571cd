package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Test tokens of a Cluster's token file.
const (
	TokenRW    = "e2e-readwrite-token-0123456789"
	TokenRO    = "e2e-readonly-token-0123456789"
	TokenAdmin = "e2e-admin-token-0123456789"
	AdminToken = "e2e-store-admin-token-0123456789" // the keepstores' admin token
	WriteToken = "e2e-store-write-token-0123456789" // the keepstores' write token (keepproxy's store_write_token_file)
	SigningKey = "e2esigningkey0123456789abcdefghijklmnopqrstuvwxyz"
)

// Store is one keepstore process of a Cluster.
type Store struct {
	Index  int
	Addr   string
	URL    string
	UUID   string // service UUID the proxy uses
	Root   string // directory volume
	Config string
	Proc   *Proc
	t      testing.TB
	bin    string
}

// Cluster is keepproxy plus keepstores, real processes on loopback.
type Cluster struct {
	Dir       string
	Stores    []*Store
	Proxy     *Proc
	ProxyAddr string
	ProxyURL  string
	TokenFile string
	ProxyCfg  string
	t         testing.TB
}

// ClusterOptions tune StartCluster.
type ClusterOptions struct {
	Stores     int
	StoreExtra string // YAML appended to every keepstore config
	ProxyExtra string // YAML appended to the keepproxy config
	// ProxyExtraFunc, if set, returns more YAML for the keepproxy config
	// once the stores are up (e.g. storages naming their URLs).
	ProxyExtraFunc func(stores []*Store) string
	// NoProxy: start only the keepstores, which then accept writes
	// without a token (the test's own keepproxy may not have it). With
	// the proxy, the stores have write_token_file (WriteToken) and the
	// proxy store_write_token_file and blob_signing_key_file, as in
	// make run.
	NoProxy bool
	// StoreYAML, if set, returns the volumes section for store i (default:
	// one Directory volume under the store's root).
	StoreYAML func(i int, root string) string
}

// WriteSecret writes a mode-0600 file.
func WriteSecret(t testing.TB, dir, name, val string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(val), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// StartCluster builds and starts the processes; they are killed at cleanup.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	if o.Stores == 0 {
		o.Stores = 3
	}
	dir := t.TempDir()
	c := &Cluster{Dir: dir, t: t}
	key := WriteSecret(t, dir, "signing.key", SigningKey)
	admin := WriteSecret(t, dir, "admin.token", AdminToken)
	write := WriteSecret(t, dir, "write.token", WriteToken)
	writeLine := "write_token_file: " + write + "\n"
	if o.NoProxy {
		writeLine = "" // the test's own keepproxy may not know the write token
	}
	ksBin := Build(t, "keepstore")
	for i := 0; i < o.Stores; i++ {
		s := &Store{Index: i, t: t, bin: ksBin}
		s.Addr = FreeAddr(t)
		s.URL = "http://" + s.Addr
		s.UUID = fmt.Sprintf("zzzzz-bi6l4-%015d", i)
		s.Root = filepath.Join(dir, fmt.Sprintf("store%d", i))
		os.MkdirAll(s.Root, 0o700)
		vols := fmt.Sprintf("volumes:\n  - driver: Directory\n    uuid: zzzzz-nyw5e-%015d\n    directory:\n      root: %s\n      reserve: -1\n", i, s.Root)
		if o.StoreYAML != nil {
			vols = o.StoreYAML(i, s.Root)
		}
		cfg := fmt.Sprintf("listen: %s\nblob_signing_key_file: %s\nadmin_token_file: %s\nlog_level: debug\n%s%s%s", s.Addr, key, admin, writeLine, vols, o.StoreExtra)
		s.Config = WriteFile(t, dir, fmt.Sprintf("keepstore%d.yml", i), cfg)
		s.Start()
		c.Stores = append(c.Stores, s)
	}
	if o.NoProxy {
		return c
	}
	c.TokenFile = WriteFile(t, dir, "tokens.yml", fmt.Sprintf("tokens:\n  - name: rw\n    token: %s\n    scopes: [read, write]\n  - name: ro\n    token: %s\n    scopes: [read]\n  - name: admin\n    token: %s\n    scopes: [admin]\n", TokenRW, TokenRO, TokenAdmin))
	var stores strings.Builder
	for _, s := range c.Stores {
		fmt.Fprintf(&stores, "  - url: %s\n    uuid: %s\n", s.URL, s.UUID)
	}
	if o.ProxyExtraFunc != nil {
		o.ProxyExtra += o.ProxyExtraFunc(c.Stores)
	}
	c.ProxyAddr = FreeAddr(t)
	c.ProxyURL = "http://" + c.ProxyAddr
	c.ProxyCfg = WriteFile(t, dir, "keepproxy.yml", fmt.Sprintf("listen: %s\ntoken_file: %s\nstore_admin_token_file: %s\nstore_write_token_file: %s\nblob_signing_key_file: %s\nlog_level: debug\nstores:\n%s%s",
		c.ProxyAddr, c.TokenFile, admin, write, key, stores.String(), o.ProxyExtra))
	c.StartProxy()
	return c
}

// StartProxy (re)starts keepproxy.
func (c *Cluster) StartProxy() {
	c.Proxy = Start(c.t, Build(c.t, "keepproxy"), []string{"-config", c.ProxyCfg})
	WaitHTTP(c.t, c.ProxyURL+"/_health/ping", 0, c.Proxy)
}

// Start (re)starts the keepstore.
func (s *Store) Start() {
	s.Proc = Start(s.t, s.bin, []string{"-config", s.Config})
	WaitHTTP(s.t, s.URL+"/_health/ping", 0, s.Proc)
}

// Kill SIGKILLs the keepstore.
func (s *Store) Kill() { s.Proc.Kill() }

// BlockPath is where a directory-volume store keeps a raw block.
func (s *Store) BlockPath(hash string) string { return filepath.Join(s.Root, hash[:3], hash) }

// Has reports whether the store's directory volume holds the block.
func (s *Store) Has(hash string) bool {
	_, err := os.Stat(s.BlockPath(hash))
	return err == nil
}
