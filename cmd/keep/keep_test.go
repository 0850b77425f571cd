package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/manifest"
)

const testToken = "cli-test-token"

// TestMain shrinks blocks to 1 MiB so the tests move little data (the
// race detector makes every copied byte expensive); e2e/keep_cli_test.go
// covers real 64 MiB blocks.
func TestMain(m *testing.M) {
	blockSize = 1 << 20
	packLimit = blockSize / 2
	os.Exit(m.Run())
}

// fakeProxy is an in-memory keepproxy for in-process CLI tests.
type fakeProxy struct {
	mu           sync.Mutex
	blocks       map[string][]byte
	puts         []string // hashes stored, in order
	heads        []string
	failPutAfter int // > 0: every PUT after this many stored ones gets 507
	corrupt      map[string]bool
	expiry       time.Duration // signature lifetime (default 2 weeks)
	replicasHdr  []string
}

func newFakeProxy(t *testing.T) (*fakeProxy, string) {
	f := &fakeProxy{blocks: map[string][]byte{}, corrupt: map[string]bool{}, expiry: 14 * 24 * time.Hour}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv.URL
}

func (f *fakeProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, "Missing or invalid Authorization header", http.StatusForbidden)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method {
	case http.MethodPut:
		body, _ := io.ReadAll(r.Body)
		if len(p) != 32 || fmt.Sprintf("%x", md5.Sum(body)) != p {
			http.Error(w, "bad hash or hinted PUT path", http.StatusBadRequest)
			return
		}
		if f.failPutAfter > 0 && len(f.puts) >= f.failPutAfter {
			http.Error(w, "insufficient storage", http.StatusInsufficientStorage)
			return
		}
		f.blocks[p] = body
		f.puts = append(f.puts, p)
		f.replicasHdr = append(f.replicasHdr, r.Header.Get("X-Keep-Desired-Replicas"))
		w.Header().Set("X-Keep-Replicas-Stored", r.Header.Get("X-Keep-Desired-Replicas"))
		fmt.Fprintf(w, "%s+%d+A%s@%08x", p, len(body), strings.Repeat("5", 40), time.Now().Add(f.expiry).Unix())
	case http.MethodGet, http.MethodHead:
		if len(p) < 32 {
			http.Error(w, "bad locator", http.StatusBadRequest)
			return
		}
		h := p[:32]
		if r.Method == http.MethodHead {
			f.heads = append(f.heads, h)
		}
		data, ok := f.blocks[h]
		if !ok {
			http.Error(w, "Block not found", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if r.Method == http.MethodGet {
			if f.corrupt[h] {
				data = bytes.Clone(data)
				data[len(data)/2] ^= 1
			}
			w.Write(data)
		}
	default:
		http.Error(w, "Bad request", http.StatusBadRequest)
	}
}

func (f *fakeProxy) putCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.puts)
}

// runKeep runs the CLI in-process with a private environment.
type testEnv struct {
	t   *testing.T
	env map[string]string
}

func newTestEnv(t *testing.T, proxy string) *testEnv {
	home := t.TempDir()
	return &testEnv{t: t, env: map[string]string{
		"HOME": home, "XDG_CACHE_HOME": filepath.Join(home, "cache"), "XDG_CONFIG_HOME": filepath.Join(home, "config"),
		"KEEP_PROXY": proxy, "KEEP_TOKEN": testToken,
	}}
}

func (e *testEnv) run(stdin string, args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	a := &app{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, getenv: func(k string) string { return e.env[k] }}
	code := a.run(context.Background(), args)
	return out.String(), errb.String(), code
}

func (e *testEnv) mustRun(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run("", args...)
	if code != 0 {
		e.t.Fatalf("keep %v: exit %d: %s", args, code, errs)
	}
	return out
}

func (e *testEnv) put(args ...string) (string, map[string]any) {
	e.t.Helper()
	out := e.mustRun(append([]string{"put", "--json"}, args...)...)
	var res map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var v map[string]any
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			e.t.Fatalf("not JSON: %q", sc.Text())
		}
		if v["event"] == "result" {
			res = v
		}
	}
	if res == nil {
		e.t.Fatalf("no result line: %s", out)
	}
	return res["locator"].(string), res
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// pattern is n pseudo-random bytes (an AES-CTR keystream: fast under the
// race detector too).
func pattern(n int, seed byte) []byte {
	var key [16]byte
	key[0] = seed
	blk, _ := aes.NewCipher(key[:])
	b := make([]byte, n)
	cipher.NewCTR(blk, make([]byte, 16)).XORKeyStream(b, b)
	return b
}

func digestTree(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		if d.IsDir() {
			out[rel] = "dir"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[rel] = fmt.Sprintf("%d:%x", len(b), md5.Sum(b))
		return nil
	})
	return out
}

func sameTree(t *testing.T, a, b string) {
	t.Helper()
	da, db := digestTree(t, a), digestTree(t, b)
	if len(da) != len(db) {
		t.Fatalf("trees differ:\n%v\n%v", da, db)
	}
	for k, v := range da {
		if db[k] != v {
			t.Fatalf("%s: %q vs %q", k, v, db[k])
		}
	}
}

func TestPutGetRoundTrip(t *testing.T) {
	f, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := filepath.Join(t.TempDir(), "tree")
	big := pattern(int(packLimit)+1, 1) // its own block
	writeFile(t, filepath.Join(src, "big.bin"), big)
	writeFile(t, filepath.Join(src, "big copy.bin"), big) // deduplicated
	writeFile(t, filepath.Join(src, "a.txt"), []byte("hello"))
	writeFile(t, filepath.Join(src, "sub", "ü n:i\\c.txt"), pattern(5000, 2))
	writeFile(t, filepath.Join(src, "sub", "empty"), nil)
	os.MkdirAll(filepath.Join(src, "hollow"), 0o755)
	bs := int(blockSize)
	writeFile(t, filepath.Join(src, "blocks", "exact"), pattern(bs, 3))
	writeFile(t, filepath.Join(src, "blocks", "plus one"), pattern(bs+1, 4))
	writeFile(t, filepath.Join(src, "blocks", "multi"), pattern(3*bs+7, 5))

	loc, res := e.put(src)
	// big 1, exact 1, plus one 2, multi 4, the packed small files 1.
	if res["blocks_uploaded"].(float64) != 9 || res["blocks_deduplicated"].(float64) != 1 {
		t.Fatalf("result %v", res)
	}
	if len(f.puts) != 10 { // and the manifest
		t.Fatalf("%d PUTs", len(f.puts))
	}
	for h, b := range f.blocks {
		if int64(len(b)) > blockSize {
			t.Fatalf("block %s has %d bytes", h, len(b))
		}
	}
	for _, r := range f.replicasHdr {
		if r != "2" {
			t.Fatalf("X-Keep-Desired-Replicas %q", r)
		}
	}
	text := string(f.blocks[loc[:32]])
	m, err := manifest.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := m.Normalize(); n.Format() != text {
		t.Fatalf("put wrote a manifest that is not normalised:\n%s", text)
	}
	dest := t.TempDir()
	e.mustRun("get", loc, dest)
	sameTree(t, filepath.Dir(src), dest)

	ls := e.mustRun("ls", loc)
	if !strings.Contains(ls, fmt.Sprintf("%15d  tree/big copy.bin\n", len(big))) || !strings.Contains(ls, "tree/hollow/\n") {
		t.Fatalf("ls:\n%s", ls)
	}
	if got := e.mustRun("cat", loc, "./tree/sub/ü n:i\\c.txt"); got != string(pattern(5000, 2)) {
		t.Fatal("cat returned other bytes")
	}
	// --manifest-only prints the same text without storing it.
	n := f.putCount()
	if out := e.mustRun("put", "--manifest-only", src); out != text {
		t.Fatalf("--manifest-only:\n%s\nwant\n%s", out, text)
	}
	if f.putCount() != n {
		t.Fatal("--manifest-only stored something")
	}
	// A manifest file, and standard input, work as SOURCE.
	mf := filepath.Join(t.TempDir(), "m.txt")
	os.WriteFile(mf, []byte(text), 0o600)
	if got := e.mustRun("ls", mf); got != ls {
		t.Fatalf("ls of a file:\n%s", got)
	}
	if out, errs, code := e.run(text, "ls", "-"); code != 0 || out != ls {
		t.Fatalf("ls -: %d %s", code, errs)
	}
}

func TestContentsOnlyAndSingleFile(t *testing.T) {
	_, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "d", "x"), []byte("x"))
	writeFile(t, filepath.Join(dir, "f"), []byte("f"))
	for args, want := range map[string]string{
		dir + "/d/":               "x",
		dir + "/d":                "d/x",
		dir + "/f":                "f",
		dir + "/d/ " + dir + "/f": "f x",
	} {
		loc, _ := e.put(strings.Fields(args)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(e.mustRun("ls", loc)), "\n") {
			got = append(got, strings.Fields(l)[1])
		}
		if strings.Join(got, " ") != want {
			t.Errorf("put %s: %q, want %q", args, got, want)
		}
	}
	// Two inputs with the same name.
	writeFile(t, filepath.Join(dir, "other", "f"), []byte("g"))
	_, errs, code := e.run("", "put", dir+"/f", dir+"/other/")
	if code != exitUsage || !strings.Contains(errs, "would both be") {
		t.Fatalf("%d %s", code, errs)
	}
}

func TestResumeAfterFailure(t *testing.T) {
	f, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := t.TempDir()
	for i := range 3 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), pattern(int(packLimit)+1000, byte(10+i)))
	}
	f.failPutAfter = 1
	_, errs, code := e.run("", "put", "--threads", "1", "--retries", "0", src+"/")
	if code != exitFailure || !strings.Contains(errs, "507: the stores are full") || !strings.Contains(errs, "1 of 3 blocks stored; run the same command again to resume") {
		t.Fatalf("first run: exit %d: %s", code, errs)
	}
	first := append([]string(nil), f.puts...)
	f.failPutAfter = 0
	_, res := e.put(src + "/")
	second := f.puts[len(first):]
	for _, h := range second {
		for _, g := range first {
			if h == g {
				t.Fatalf("block %s sent again", h)
			}
		}
	}
	if len(second) != 3 || res["pieces_from_cache"].(float64) != 1 { // 2 data blocks + manifest
		t.Fatalf("second run: %d PUTs, %v", len(second), res)
	}
	// A third run sends only the manifest (which dedupes on the stores).
	n := f.putCount()
	e.put(src + "/")
	if f.putCount() != n+1 {
		t.Fatalf("third run: %d PUTs", f.putCount()-n)
	}
	// A changed file is sent again; the others are not.
	os.WriteFile(filepath.Join(src, "f1"), pattern(int(packLimit)+1000, 99), 0o644)
	n = f.putCount()
	e.put(src + "/")
	if f.putCount() != n+2 {
		t.Fatalf("after a change: %d PUTs", f.putCount()-n)
	}
	// --no-resume and --no-cache send everything.
	for _, flag := range []string{"--no-resume", "--no-cache"} {
		n = f.putCount()
		e.put(flag, src+"/")
		if f.putCount() != n+4 {
			t.Fatalf("%s: %d PUTs", flag, f.putCount()-n)
		}
	}
}

func TestResumeRechecksNearExpiry(t *testing.T) {
	f, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), pattern(int(packLimit)+10, 1))
	writeFile(t, filepath.Join(src, "b"), pattern(int(packLimit)+20, 2))
	f.expiry = time.Hour // inside the 24h re-check window
	e.put(src + "/")
	f.heads = nil
	n := f.putCount()
	e.put(src + "/")
	if len(f.heads) != 2 || f.putCount() != n+1 {
		t.Fatalf("near expiry: %d HEADs, %d PUTs", len(f.heads), f.putCount()-n)
	}
	// A block the proxy lost is sent again.
	f.mu.Lock()
	delete(f.blocks, fmt.Sprintf("%x", md5.Sum(pattern(int(packLimit)+10, 1))))
	f.mu.Unlock()
	n = f.putCount()
	e.put(src + "/")
	if f.putCount() != n+2 {
		t.Fatalf("lost block: %d PUTs", f.putCount()-n)
	}
	// Expired signatures are not reused at all.
	f.expiry = -time.Minute
	e.put("--no-resume", src+"/")
	f.heads = nil
	n = f.putCount()
	e.put(src + "/")
	if len(f.heads) != 0 || f.putCount() != n+3 {
		t.Fatalf("expired: %d HEADs, %d PUTs", len(f.heads), f.putCount()-n)
	}
}

func TestResumeCacheThatDoesNotMatch(t *testing.T) {
	f, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), pattern(100, 1))
	e.put(src + "/")
	f.mu.Lock()
	f.blocks = map[string][]byte{} // the proxy forgot everything
	f.mu.Unlock()
	n := f.putCount()
	_, errs, code := e.run("", "put", src+"/")
	if code != 0 || !strings.Contains(errs, "the resume cache does not match") || f.putCount() != n+2 {
		t.Fatalf("exit %d, %d PUTs: %s", code, f.putCount()-n, errs)
	}
}

func TestCacheLock(t *testing.T) {
	dir := t.TempDir()
	c1, err := openCache(dir, "put-x", "http://p", false, false)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := openCache(dir, "put-x", "http://p", false, false); err == nil || !strings.Contains(err.Error(), "another keep put is already uploading") {
		t.Fatalf("%v", err)
	}
	// Checkpoints are whole JSON documents.
	c1.entry("/a", 1, 2)
	c1.record("/a", 0, cachedPiece{Locator: blockstore.EmptyLocator, Len: 1, Replicas: 2})
	if err := c1.checkpoint(); err != nil {
		t.Fatal(err)
	}
	var d cacheData
	b, _ := os.ReadFile(filepath.Join(dir, "put-x.json"))
	if err := json.Unmarshal(b, &d); err != nil || d.Files["/a"].Pieces[0].Replicas != 2 {
		t.Fatalf("%v %s", err, b)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*.tmp*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
	// The name depends on the proxy, the token and the inputs, not their order.
	a := cacheName("http://p", "t", []string{"/x", "/y"})
	if a != cacheName("http://p/", "t", []string{"/y", "/x"}) || a == cacheName("http://p", "u", []string{"/x", "/y"}) ||
		a == cacheName("http://q", "t", []string{"/x", "/y"}) || a == cacheName("http://p", "t", []string{"/x/", "/y"}) {
		t.Fatal("cache names")
	}
}

func TestGetCorruptBlock(t *testing.T) {
	f, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "bad.bin"), pattern(int(packLimit)+5, 3))
	writeFile(t, filepath.Join(src, "good.txt"), []byte("fine"))
	loc, _ := e.put(src + "/")
	f.corrupt[fmt.Sprintf("%x", md5.Sum(pattern(int(packLimit)+5, 3)))] = true
	dest := t.TempDir()
	_, errs, code := e.run("", "get", "--retries", "1", "--threads", "1", loc, dest)
	if code != exitIntegrity || !strings.Contains(errs, "bad.bin") || !strings.Contains(errs, "do not match the block's MD5") {
		t.Fatalf("exit %d: %s", code, errs)
	}
	entries, _ := os.ReadDir(dest)
	for _, en := range entries {
		if en.Name() != "good.txt" {
			t.Fatalf("left behind in DEST: %s", en.Name())
		}
	}
	out, _, code := e.run("", "cat", "--retries", "0", loc, "bad.bin")
	if code != exitIntegrity || out != "" {
		t.Fatalf("cat: exit %d, %d bytes out", code, len(out))
	}
}

func TestGetErrors(t *testing.T) {
	_, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "x"), []byte("x"))
	loc, _ := e.put(src + "/")
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"get", loc}, exitUsage, "get needs SOURCE and DEST"},
		{[]string{"get", "nonsense", t.TempDir()}, exitUsage, "neither a file nor a locator"},
		{[]string{"get", fmt.Sprintf("%x+1", md5.Sum([]byte("x"))), t.TempDir()}, exitFailure, "is not a manifest"},
		{[]string{"get", blockstore.HashOf([]byte("nope")).String() + "+4", t.TempDir()}, exitFailure, "404: block"},
		{[]string{"cat", loc, "missing"}, exitUsage, "not a file in the manifest"},
		{[]string{"frobnicate"}, exitUsage, "unknown command"},
		{[]string{"put"}, exitUsage, "put needs at least one PATH"},
		{[]string{"put", "--threads", "0", src}, exitUsage, "--threads"},
		{[]string{"put", "--bogus", src}, exitUsage, "unknown flag"},
		{[]string{"put", filepath.Join(src, "does-not-exist")}, exitUsage, "no such file"},
	} {
		_, errs, code := e.run("", tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.msg) || strings.Count(errs, "\n") != 1 {
			t.Errorf("keep %v: exit %d, %q; want %d and %q", tc.args, code, errs, tc.code, tc.msg)
		}
	}
	// Wrong token: a one-line hint.
	e.env["KEEP_TOKEN"] = "wrong"
	_, errs, code := e.run("", "put", src)
	if code != exitFailure || !strings.Contains(errs, "403: the proxy refused the token — check KEEP_TOKEN") {
		t.Fatalf("%d %s", code, errs)
	}
	// Unreachable proxy.
	e.env["KEEP_TOKEN"] = testToken
	e.env["KEEP_PROXY"] = "http://127.0.0.1:1"
	_, errs, code = e.run("", "ls", "--retries", "0", loc)
	if code != exitFailure || !strings.Contains(errs, "proxy unreachable at http://127.0.0.1:1") {
		t.Fatalf("%d %s", code, errs)
	}
	if _, _, code := e.run("", "help"); code != 0 {
		t.Fatal("help")
	}
	out, _, code := e.run("", "get", "--help")
	if code != 0 || !strings.Contains(out, "--force") {
		t.Fatalf("get --help: %d %s", code, out)
	}
}

func TestJSONProgress(t *testing.T) {
	_, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a"), pattern(1000, 1))
	writeFile(t, filepath.Join(src, "e"), nil)
	out := e.mustRun("put", "--json", src+"/")
	events := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v map[string]any
		if err := json.Unmarshal([]byte(l), &v); err != nil {
			t.Fatalf("%q", l)
		}
		events[v["event"].(string)]++
	}
	if events["file"] != 2 || events["result"] != 1 || events["progress"] < 1 {
		t.Fatalf("%v\n%s", events, out)
	}
}

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "keep", "config.yml")
	writeFile(t, cfg, []byte("proxy: https://from-file\ntoken: file-token\nthreads: 7\nretries: 9\nreplicas: 3\n"))
	os.Chmod(cfg, 0o644)
	resolveWith := func(env map[string]string, args ...string) (*settings, []string, error) {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		var cf commonFlags
		addCommon(fs, &cf, 4)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		env["XDG_CONFIG_HOME"] = dir
		var warns []string
		s, err := resolve(fs, &cf, func(k string) string { return env[k] }, func(w string) { warns = append(warns, w) })
		return s, warns, err
	}
	s, warns, err := resolveWith(map[string]string{})
	if err != nil || s.Proxy != "https://from-file" || s.Token != "file-token" || s.Threads != 7 || s.Retries != 9 || s.Replicas != 3 {
		t.Fatalf("file: %+v %v", s, err)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "chmod 600") {
		t.Fatalf("warnings %v", warns)
	}
	s, _, _ = resolveWith(map[string]string{"ARVADOS_KEEP_SERVICES": "https://arv-a https://arv-b", "ARVADOS_API_TOKEN": "arv-token", "ARVADOS_API_HOST_INSECURE": "true"})
	if s.Proxy != "https://arv-a" || s.Token != "arv-token" || !s.Insecure {
		t.Fatalf("arvados env: %+v", s)
	}
	s, _, _ = resolveWith(map[string]string{"KEEP_PROXY": "https://keep-env", "ARVADOS_KEEP_SERVICES": "https://arv", "KEEP_TOKEN": "env-token", "KEEP_INSECURE": "0", "ARVADOS_API_HOST_INSECURE": "1"})
	if s.Proxy != "https://keep-env" || s.Token != "env-token" || s.Insecure {
		t.Fatalf("keep env: %+v", s)
	}
	s, _, _ = resolveWith(map[string]string{"KEEP_PROXY": "https://keep-env", "KEEP_INSECURE": "1"}, "--proxy", "https://flag", "--threads", "2", "--insecure=false")
	if s.Proxy != "https://flag" || s.Threads != 2 || s.Insecure || s.Source["proxy"] != "--proxy" {
		t.Fatalf("flags: %+v", s)
	}
	_, warns, _ = resolveWith(map[string]string{"KEEP_PROXY": "http://example.com:25107"})
	if len(warns) != 2 || !strings.Contains(warns[1], "plain http") {
		t.Fatalf("http warning: %v", warns)
	}
	if _, _, err := resolveWith(map[string]string{"KEEP_INSECURE": "maybe"}); err == nil {
		t.Fatal("KEEP_INSECURE=maybe accepted")
	}
	if _, _, err := resolveWith(map[string]string{"KEEP_PROXY": "ftp://x"}); err == nil {
		t.Fatal("ftp proxy accepted")
	}
	if _, _, err := resolveWith(map[string]string{}, "--config", filepath.Join(dir, "missing.yml")); err == nil {
		t.Fatal("missing --config accepted")
	}
	os.Remove(cfg)
	if _, _, err := resolveWith(map[string]string{"KEEP_PROXY": "http://localhost"}); err == nil || !strings.Contains(err.Error(), "no token: set KEEP_TOKEN") {
		t.Fatalf("no token: %v", err)
	}
}

func TestInsecureWarning(t *testing.T) {
	_, url := newFakeProxy(t)
	e := newTestEnv(t, url)
	e.env["KEEP_INSECURE"] = "true"
	mf := filepath.Join(t.TempDir(), "m")
	os.WriteFile(mf, []byte(". "+blockstore.EmptyLocator+" 0:0:x\n"), 0o600)
	_, errs, code := e.run("", "get", "--quiet", mf, t.TempDir())
	if code != 0 || !strings.Contains(errs, "WARNING: --insecure") {
		t.Fatalf("%d %q", code, errs)
	}
}

func TestWalkSkipsSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "real"), []byte("r"))
	os.MkdirAll(filepath.Join(dir, "sub", "empty"), 0o755)
	os.Symlink(filepath.Join(dir, "real"), filepath.Join(dir, "link-to-file"))
	os.Symlink(filepath.Join(dir, "sub"), filepath.Join(dir, "link-to-dir"))
	os.Symlink(filepath.Join(dir, "nowhere"), filepath.Join(dir, "broken"))
	var warns []string
	files, err := walkInputs([]string{dir + "/"}, func(w string) { warns = append(warns, w) })
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		s := f.Path
		if f.Dir {
			s += "/"
		}
		got = append(got, s)
	}
	if strings.Join(got, " ") != "link-to-file real sub/empty/" || len(warns) != 2 {
		t.Fatalf("%q %q", got, warns)
	}
}
