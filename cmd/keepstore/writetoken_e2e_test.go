package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/testenv"
)

const e2eWrite = "e2e-write-token-0123456789"

// With write_token_file, only the write token (or the admin token) stores
// blocks; reads are unchanged; the file is mode-checked like every secret.
func TestWriteTokenFile(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "vol")
	os.Mkdir(root, 0o755)
	wt := testenv.WriteFile(t, dir, "write", e2eWrite+"\n")
	k := startKS(t, secretsYAML(t, dir)+"write_token_file: "+wt+"\nvolumes:\n"+dirVolume(root, ""))

	k.want(k.do("PUT", "/"+helloHash, bytes.NewReader(helloData)), 401, "Unauthorized: this keepstore stores blocks only for its write token")
	k.want(k.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(e2eUser)), 403, "Forbidden: this keepstore stores blocks only for its write token")
	k.want(k.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(e2eMgmt)), 403, "Forbidden")
	if entries, _ := os.ReadDir(root); len(entries) != 0 {
		t.Fatalf("refused PUTs left %v", entries)
	}
	r := k.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(e2eWrite))
	k.want(r, 200, helloHash+"+11+A")
	loc, _ := blockstore.ParseLocator(strings.TrimSpace(r.body))
	if err := signer().Verify(loc, e2eWrite); err != nil {
		t.Fatalf("locator not signed for the write token: %v", err)
	}
	k.want(k.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(e2eAdmin)), 200, helloHash+"+11+A")
	userLoc := signer().Sign(loc.WithoutHints(), e2eUser).String()
	k.want(k.do("GET", "/"+userLoc, nil, auth(e2eUser)), 200, string(helloData))

	out := k.proc.Output()
	if !strings.Contains(out, `"write_token":true`) || strings.Contains(out, "no write_token_file") || strings.Contains(out, e2eWrite) {
		t.Errorf("start-up log with a write token:\n%s", out)
	}

	// Without it: anyone in allowed_networks writes, and the log says so.
	k2 := startKS(t, "volumes:\n"+dirVolume(t.TempDir(), ""))
	k2.want(k2.do("PUT", "/"+helloHash, bytes.NewReader(helloData)), 200, helloHash+"+11")
	if !k2.proc.Contains("no write_token_file") {
		t.Errorf("no warning without write_token_file:\n%s", k2.proc.Output())
	}

	// A write token file others may read is refused.
	open := filepath.Join(dir, "open-write")
	os.WriteFile(open, []byte(e2eWrite), 0o644)
	p := testenv.Start(t, testenv.Build(t, "keepstore"), []string{"-config",
		testenv.WriteFile(t, dir, "bad.yml", "listen: "+testenv.FreeAddr(t)+"\nwrite_token_file: "+open+"\nvolumes:\n"+dirVolume(root, ""))})
	if err, exited := p.Wait(10 * time.Second); !exited || err == nil || !strings.Contains(p.Output(), "write_token_file") || !strings.Contains(p.Output(), "chmod 600") {
		t.Errorf("mode 0644 write token: exited=%v err=%v\n%s", exited, err, p.Output())
	}
}

// A cluster as make run sets it up: the stores take writes only with the
// write token, keepproxy writes with it and re-signs the locators for its
// caller, so the caller's locators work through keepproxy and on the
// stores alike.
func TestWriteTokenThroughKeepproxy(t *testing.T) {
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	store := &ksProc{t: t, proc: c.Stores[0].Proc, url: c.Stores[0].URL, addr: c.Stores[0].Addr}
	store.want(store.do("PUT", "/"+helloHash, bytes.NewReader(helloData)), 401, "Unauthorized")
	store.want(store.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(testenv.TokenRW)), 403, "Forbidden")

	proxy := &ksProc{t: t, proc: c.Proxy, url: c.ProxyURL, addr: c.ProxyAddr}
	r := proxy.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(testenv.TokenRW), "X-Keep-Desired-Replicas: 2")
	proxy.want(r, 200, helloHash+"+11+A")
	if r.hdr.Get("X-Keep-Replicas-Stored") != "2" {
		t.Fatalf("replicas stored %q", r.hdr.Get("X-Keep-Replicas-Stored"))
	}
	loc, err := blockstore.ParseLocator(strings.TrimSpace(r.body))
	if err != nil {
		t.Fatal(err)
	}
	s := &blockstore.Signer{Key: []byte(testenv.SigningKey), TTL: 336 * time.Hour}
	if err := s.Verify(loc, testenv.TokenRW); err != nil {
		t.Fatalf("keepproxy's locator is not signed for its caller: %v", err)
	}
	proxy.want(proxy.do("GET", "/"+loc.String(), nil, auth(testenv.TokenRW)), 200, string(helloData))
	for _, st := range c.Stores {
		k := &ksProc{t: t, proc: st.Proc, url: st.URL, addr: st.Addr}
		k.want(k.do("GET", "/"+loc.String(), nil, auth(testenv.TokenRW)), 200, string(helloData))
		if strings.Contains(st.Proc.Output(), testenv.WriteToken) {
			t.Errorf("store %d logged the write token", st.Index)
		}
	}
	if strings.Contains(c.Proxy.Output(), testenv.WriteToken) {
		t.Error("keepproxy logged the write token")
	}
}
