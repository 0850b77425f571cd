package main

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

const (
	e2eKey   = "examplesigningkey0123456789abcdefghijklmnopqrstuvwxyz"
	e2eAdmin = "e2e-admin-token-0123456789"
	e2eMgmt  = "e2e-management-token-0123456789"
	e2eUser  = "e2e-user-token"
)

var helloData = []byte("hello keep\n")

const helloHash = "6f09f2b353b6d63069f770b90e2b112c"

// ksProc is a running keepstore.
type ksProc struct {
	t    *testing.T
	proc *testenv.Proc
	url  string
	addr string
	cfg  string
	env  []string
}

// secretsYAML writes the three secret files into dir and returns the
// config lines naming them.
func secretsYAML(t *testing.T, dir string) string {
	return fmt.Sprintf("admin_token_file: %s\nmanagement_token_file: %s\nblob_signing_key_file: %s\n",
		testenv.WriteFile(t, dir, "admin", e2eAdmin+"\n"),
		testenv.WriteFile(t, dir, "mgmt", e2eMgmt+"\n"),
		testenv.WriteFile(t, dir, "key", e2eKey+"\n"))
}

// startKS writes body (plus "listen: <free addr>" unless body has one) as
// the config file and starts keepstore with it and env.
func startKS(t *testing.T, body string, env ...string) *ksProc {
	t.Helper()
	dir := t.TempDir()
	addr := testenv.FreeAddr(t)
	if !strings.Contains(body, "listen:") {
		body = "listen: " + addr + "\n" + body
	}
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "KEEPSTORE_LISTEN="); ok {
			addr = v
		}
	}
	k := &ksProc{t: t, addr: addr, url: "http://" + addr, cfg: testenv.WriteFile(t, dir, "keepstore.yml", body), env: env}
	k.start()
	return k
}

func (k *ksProc) start() {
	k.t.Helper()
	k.proc = testenv.Start(k.t, testenv.Build(k.t, "keepstore"), []string{"-config", k.cfg}, k.env...)
	testenv.WaitHTTP(k.t, k.url+"/_health/ping", 0, k.proc)
}

type reply struct {
	code int
	hdr  http.Header
	body string
	err  error
}

var client = &http.Client{Timeout: 60 * time.Second}

// do sends a request; hdr entries are "Name: value".
func (k *ksProc) do(method, path string, body io.Reader, hdr ...string) reply {
	k.t.Helper()
	req, err := http.NewRequest(method, k.url+path, body)
	if err != nil {
		k.t.Fatal(err)
	}
	for _, h := range hdr {
		n, v, _ := strings.Cut(h, ":")
		req.Header.Set(n, strings.TrimSpace(v))
	}
	res, err := client.Do(req)
	if err != nil {
		k.t.Fatalf("%s %s: %v\n%s", method, path, err, k.proc.Output())
	}
	defer res.Body.Close()
	b, rerr := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, string(b), rerr}
}

func (k *ksProc) want(r reply, code int, prefix string) {
	k.t.Helper()
	if r.code != code || !strings.HasPrefix(r.body, prefix) {
		k.t.Fatalf("got %d %q, want %d %q…", r.code, r.body, code, prefix)
	}
}

func auth(tok string) string { return "Authorization: Bearer " + tok }

func signer() *blockstore.Signer {
	return &blockstore.Signer{Key: []byte(e2eKey), TTL: 336 * time.Hour}
}

func dirVolume(root string, extra string) string {
	return fmt.Sprintf("  - driver: Directory\n%s    directory:\n      root: %s\n", extra, root)
}

// TestEndpoints exercises every endpoint and failure status of a signing
// keepstore with one directory volume.
func TestEndpoints(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "vol")
	os.Mkdir(root, 0o755)
	k := startKS(t, secretsYAML(t, dir)+"volumes:\n"+dirVolume(root, ""))

	// PUT: signed locator, replicas, classes.
	r := k.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(e2eUser), "X-Keep-Storage-Classes: default")
	k.want(r, 200, helloHash+"+11+A")
	if r.hdr.Get("X-Keep-Replicas-Stored") != "1" || r.hdr.Get("X-Keep-Storage-Classes-Confirmed") != "default=1" ||
		r.hdr.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("PUT headers: %v", r.hdr)
	}
	signed := strings.TrimSuffix(r.body, "\n")
	loc, _ := blockstore.ParseLocator(signed)
	if err := signer().Verify(loc, e2eUser); err != nil {
		t.Fatalf("PUT returned a locator that does not verify: %v", err)
	}

	// GET, HEAD, Range.
	r = k.do("GET", "/"+signed, nil, auth(e2eUser))
	k.want(r, 200, string(helloData))
	if r.hdr.Get("Content-Length") != "11" || r.hdr.Get("Vary") != "X-Keep-Signature" {
		t.Fatalf("GET headers: %v", r.hdr)
	}
	r = k.do("HEAD", "/"+signed, nil, auth(e2eUser))
	if r.code != 200 || r.hdr.Get("Content-Length") != "11" {
		t.Fatalf("HEAD: %d %v", r.code, r.hdr)
	}
	r = k.do("GET", "/"+signed, nil, auth(e2eUser), "Range: bytes=6-9")
	if r.code != 206 || r.body != "keep" || r.hdr.Get("Content-Range") != "bytes 6-9/11" {
		t.Fatalf("Range: %d %q %v", r.code, r.body, r.hdr)
	}
	k.want(k.do("GET", "/"+signed, nil, auth(e2eUser), "Range: bytes=11-"), 416, "requested range not satisfiable")

	// Read failures: no token, bad signature, expired signature, no size
	// hint, unknown locator.
	k.want(k.do("GET", "/"+signed, nil), 401, "no token provided in Authorization header")
	k.want(k.do("GET", "/"+signed, nil, auth("another-token")), 400, "invalid signature")
	k.want(k.do("GET", "/"+helloHash+"+11", nil, auth(e2eUser)), 400, "invalid signature")
	expired := signer().SignUntil(loc.WithoutHints(), e2eUser, time.Now().Add(-time.Hour)).String()
	k.want(k.do("GET", "/"+expired, nil, auth(e2eUser)), 401, "expired signature")
	k.want(k.do("GET", "/"+helloHash, nil, auth(e2eUser)), 405, "method not allowed")
	unknown, _ := blockstore.ParseLocator("0123456789abcdef0123456789abcdef+5")
	k.want(k.do("GET", "/"+signer().Sign(unknown, e2eUser).String(), nil, auth(e2eUser)), 404, "block 0123456789abcdef0123456789abcdef not found")

	// Write failures: bad hash, short body, oversized body (declared and
	// chunked).
	k.want(k.do("PUT", "/0123456789abcdef0123456789abcdef", bytes.NewReader(helloData)), 400, "content hash "+helloHash+" did not match")
	if code, body := rawPut(t, k.addr, helloHash, 100, helloData, ""); code != 400 || !strings.Contains(body, "did not match specified data size 100") {
		t.Fatalf("short body: %d %q", code, body)
	}
	if code, body := rawPut(t, k.addr, helloHash, blockstore.MaxBlockSize+1, nil, ""); code != 413 {
		t.Fatalf("oversized (Content-Length): %d %q", code, body)
	}
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 1<<20)
		for i := 0; i <= blockstore.MaxBlockSize>>20; i++ {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	k.want(k.do("PUT", "/"+helloHash, pr), 413, "request entity too large")
	pr.Close()

	// Expect: 100-continue is answered before the body is sent.
	if code, _ := rawPut(t, k.addr, helloHash, 11, helloData, "Expect: 100-continue\r\n"); code != 200 {
		t.Fatalf("100-continue PUT: %d", code)
	}

	// Admin endpoints: 401 without a token, 403 with another one.
	admin := []struct{ method, path, body string }{
		{"GET", "/index", ""}, {"GET", "/index/6f0", ""}, {"GET", "/index?prefix=6f0", ""}, {"GET", "/mounts", ""},
		{"PUT", "/trash", "[]"}, {"PUT", "/untrash/" + helloHash + "+11", ""}, {"TOUCH", "/" + helloHash + "+11", ""},
		{"DELETE", "/" + helloHash + "+11", ""},
	}
	for _, a := range admin {
		k.want(k.do(a.method, a.path, strings.NewReader(a.body)), 401, "Unauthorized")
		k.want(k.do(a.method, a.path, strings.NewReader(a.body), auth(e2eUser)), 403, "Forbidden")
		k.want(k.do(a.method, a.path, strings.NewReader(a.body), auth(e2eMgmt)), 403, "Forbidden")
	}
	// ...and what they do with it.
	r = k.do("GET", "/index", nil, auth(e2eAdmin))
	if r.code != 200 || !strings.HasPrefix(r.body, helloHash+"+11 ") || !strings.HasSuffix(r.body, "\n\n") || strings.Count(r.body, "\n") != 2 {
		t.Fatalf("index: %d %q", r.code, r.body)
	}
	k.want(k.do("GET", "/index/fff", nil, auth(e2eAdmin)), 200, "\n")
	k.want(k.do("GET", "/index/XYZ", nil, auth(e2eAdmin)), 400, "invalid prefix")
	var mounts []map[string]any
	r = k.do("GET", "/mounts", nil, auth(e2eAdmin))
	if err := json.Unmarshal([]byte(r.body), &mounts); err != nil || len(mounts) != 1 || mounts[0]["allow_write"] != true ||
		!strings.HasPrefix(mounts[0]["uuid"].(string), "zzzzz-nyw5e-") || mounts[0]["device_id"] != "dir:"+root {
		t.Fatalf("mounts: %q %v", r.body, err)
	}
	uuid := mounts[0]["uuid"].(string)
	r = k.do("GET", "/mounts/"+uuid+"/blocks?prefix=6f0", nil, auth(e2eAdmin))
	if r.code != 200 || !strings.HasPrefix(r.body, helloHash+"+11 ") {
		t.Fatalf("mount index: %d %q", r.code, r.body)
	}
	k.want(k.do("GET", "/mounts/zzzzz-nyw5e-nosuchmount0000/blocks", nil, auth(e2eAdmin)), 404, "no mount")
	k.want(k.do("TOUCH", "/"+helloHash+"+11", nil, auth(e2eAdmin)), 200, "")
	k.want(k.do("TOUCH", "/0123456789abcdef0123456789abcdef+5", nil, auth(e2eAdmin)), 404, "")
	// A block younger than signature_ttl is kept by DELETE (and by trash
	// lists), so untrash finds nothing.
	k.want(k.do("DELETE", "/"+helloHash+"+11", nil, auth(e2eAdmin)), 200, "")
	k.want(k.do("GET", "/"+signed, nil, auth(e2eUser)), 200, string(helloData))
	k.want(k.do("PUT", "/untrash/"+helloHash+"+11", nil, auth(e2eAdmin)), 404, "")
	items := fmt.Sprintf(`[{"locator":"%s+11","block_mtime":1,"mount_uuid":"%s"}]`, helloHash, uuid)
	k.want(k.do("PUT", "/trash", strings.NewReader(items), auth(e2eAdmin)), 200, "")
	k.want(k.do("PUT", "/trash", strings.NewReader("{"), auth(e2eAdmin)), 400, "trash list")

	// Management endpoints.
	k.want(k.do("GET", "/_health/ping", nil), 401, "authorization required")
	k.want(k.do("GET", "/_health/ping", nil, auth(e2eAdmin)), 403, "authorization error")
	k.want(k.do("GET", "/_health/ping", nil, auth(e2eMgmt)), 200, `{"health":"OK"}`)
	k.want(k.do("GET", "/metrics", nil), 401, "Unauthorized")
	r = k.do("GET", "/metrics", nil, auth(e2eMgmt))
	for _, want := range []string{`keepstore_requests_total{code="200",method="PUT"}`, "keepstore_buffer_budget_in_use_bytes 0",
		`keepstore_volume_operations_total{operation="put",volume="` + uuid + `"}`, "go_goroutines", "process_resident_memory_bytes"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	k.want(k.do("GET", "/status.json", nil), 401, "Unauthorized")
	r = k.do("GET", "/status.json", nil, auth(e2eMgmt))
	var st struct {
		Version      string
		Volumes      []map[string]any
		MemoryBudget struct{ Limit, InUse int64 } `json:"memory_budget"`
	}
	if err := json.Unmarshal([]byte(r.body), &st); err != nil || st.Version != "dev" || len(st.Volumes) != 1 || st.MemoryBudget.Limit != 256<<20 {
		t.Fatalf("status: %q %v", r.body, err)
	}

	// No CORS: a preflight is an unknown method like any other. Unknown routes.
	r = k.do("OPTIONS", "/"+helloHash, nil, "Origin: https://example.com", "Access-Control-Request-Method: PUT")
	if r.code != 400 || r.body != "Bad Request\n" || r.hdr.Get("Access-Control-Allow-Origin") != "" || r.hdr.Get("Access-Control-Allow-Methods") != "" {
		t.Fatalf("OPTIONS: %d %q %v", r.code, r.body, r.hdr)
	}
	for _, p := range []string{"/", "//index", "/debug.json"} {
		k.want(k.do("GET", p, nil), 400, "Bad Request")
	}
	k.want(k.do("POST", "/", nil), 400, "Bad Request")

	// The logs: JSON, a request id per request, and never a secret.
	out := k.proc.Output()
	if !strings.Contains(out, `"msg":"request"`) || !strings.Contains(out, `"request_id":"req-`) {
		t.Errorf("no JSON access log with request ids:\n%s", out)
	}
	for _, s := range []string{e2eKey, e2eAdmin, e2eMgmt, e2eUser} {
		if strings.Contains(out, s) {
			t.Errorf("the log contains the secret %q", s)
		}
	}
}

// rawPut sends a PUT over a raw connection with the given Content-Length
// and body, then half-closes the connection and reads the final response.
func rawPut(t *testing.T, addr, hash string, size int64, body []byte, extra string) (int, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: keep\r\nContent-Length: %d\r\n%s\r\n", hash, size, extra)
	br := bufio.NewReader(conn)
	if extra != "" {
		line, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 100 Continue") {
			t.Fatalf("want 100 Continue, got %q", line)
		}
		br.ReadString('\n')
	}
	conn.Write(body)
	if int64(len(body)) < size {
		// A short body: end it, so the store sees it is short. (Not after a
		// whole body: Go's server takes a half-closed connection for a
		// client that went away, and cancels a PUT still committing.)
		conn.(*net.TCPConn).CloseWrite()
	}
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestFullAndReadOnlyVolumes: 507 when the only volume is full, or read-only.
func TestFullAndReadOnlyVolumes(t *testing.T) {
	dir := t.TempDir()
	full := filepath.Join(dir, "full")
	ro := filepath.Join(dir, "ro")
	os.Mkdir(full, 0o755)
	os.MkdirAll(filepath.Join(ro, helloHash[:3]), 0o755)
	os.WriteFile(filepath.Join(ro, helloHash[:3], helloHash), helloData, 0o644)

	kf := startKS(t, "volumes:\n"+dirVolume(full, "")+"      reserve: 1PiB\n")
	kf.want(kf.do("PUT", "/"+helloHash, bytes.NewReader(helloData)), 507, "insufficient storage")
	kr := startKS(t, "volumes:\n"+dirVolume(ro, "    read_only: true\n"))
	kr.want(kr.do("PUT", "/"+helloHash, bytes.NewReader(helloData)), 507, "insufficient storage")
	kr.want(kr.do("GET", "/"+helloHash+"+11", nil), 200, string(helloData))
	entries, _ := os.ReadDir(full)
	if len(entries) != 0 {
		t.Fatalf("the full volume got files: %v", entries)
	}
}

// TestEnvOverridesAndLimits: KEEPSTORE_* variables win over the file; the
// memory budget answers 503 + Retry-After; allowed_networks answers 403.
func TestEnvOverridesAndLimits(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "vol")
	os.Mkdir(root, 0o755)
	addr := testenv.FreeAddr(t)
	k := startKS(t, "listen: 127.0.0.1:1\nsignature_ttl: 336h\n"+secretsYAML(t, dir)+"volumes:\n"+dirVolume(root, ""),
		"KEEPSTORE_LISTEN="+addr, "KEEPSTORE_SIGNATURE_TTL=1h", "KEEPSTORE_MEMORY_BUDGET=2MiB")
	r := k.do("PUT", "/"+helloHash, bytes.NewReader(helloData), auth(e2eUser))
	k.want(r, 200, helloHash)
	loc, _ := blockstore.ParseLocator(strings.TrimSpace(r.body))
	exp, _ := blockstore.SignatureExpiry(loc)
	if d := time.Until(exp); d < 50*time.Minute || d > 61*time.Minute {
		t.Fatalf("signature expires in %v, want about 1h (KEEPSTORE_SIGNATURE_TTL)", d)
	}
	if err := (&blockstore.Signer{Key: []byte(e2eKey), TTL: time.Hour}).Verify(loc, e2eUser); err != nil {
		t.Fatalf("signed with the wrong TTL: %v", err)
	}

	// A slow PUT holds the whole 2 MiB budget (a copy buffer and a checksum
	// chunk): others get 503 + Retry-After.
	data, h := volumetest.Block(1, 3<<20)
	pr, pw := io.Pipe()
	done := make(chan reply, 1)
	go func() { done <- k.do("PUT", "/"+h.String(), pr) }()
	pw.Write(data[:1<<20])
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var st struct {
			MemoryBudget struct {
				InUse int64 `json:"in_use"`
			} `json:"memory_budget"`
		}
		json.Unmarshal([]byte(k.do("GET", "/status.json", nil, auth(e2eMgmt)).body), &st)
		if st.MemoryBudget.InUse > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow PUT never took the memory budget")
		}
	}
	r = k.do("GET", "/"+strings.TrimSpace(loc.String()), nil, auth(e2eUser))
	if r.code != 503 || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("over budget: %d %q %v", r.code, r.body, r.hdr)
	}
	pw.Write(data[1<<20:])
	pw.Close()
	if r := <-done; r.code != 200 {
		t.Fatalf("slow PUT: %d %q", r.code, r.body)
	}

	k2 := startKS(t, "volumes:\n"+dirVolume(t.TempDir(), ""), "KEEPSTORE_ALLOWED_NETWORKS=10.0.0.0/8, 192.168.0.0/16")
	k2.want(k2.do("GET", "/"+helloHash+"+11", nil), 403, "Forbidden: client address 127.0.0.1 is not in this keepstore's allowed_networks")
}

// TestBadConfigs: the process refuses to start, naming the problem.
func TestBadConfigs(t *testing.T) {
	bin := testenv.Build(t, "keepstore")
	dir := t.TempDir()
	for _, c := range []struct{ body, want string }{
		{"listen: 127.0.0.1:0\nvolumez: []\n", `unknown key "volumez"`},
		{"volumes:\n" + dirVolume(dir, ""), "listen is required"},
		{"listen: 0.0.0.0:25108\nvolumes:\n" + dirVolume(dir, ""), "allow_all_interfaces"},
		{"listen: 127.0.0.1:0\nvolumes:\n" + dirVolume(filepath.Join(dir, "missing"), ""), "does not exist"},
	} {
		p := testenv.WriteFile(t, t.TempDir(), "bad.yml", c.body)
		proc := testenv.Start(t, bin, []string{"-config", p})
		err, exited := proc.Wait(10 * time.Second)
		if !exited || err == nil || !strings.Contains(proc.Output(), c.want) {
			t.Errorf("config %q: exited=%v err=%v, output:\n%s", c.body, exited, err, proc.Output())
		}
	}
	proc := testenv.Start(t, bin, nil)
	if err, _ := proc.Wait(10 * time.Second); err == nil || !strings.Contains(proc.Output(), "Usage: keepstore") {
		t.Errorf("no -config: %v\n%s", err, proc.Output())
	}
}

// TestGracefulShutdown: SIGTERM ends the process with status 0 within 5 s,
// even with a request stuck in flight.
func TestGracefulShutdown(t *testing.T) {
	k := startKS(t, "volumes:\n"+dirVolume(t.TempDir(), ""))
	conn, err := net.Dial("tcp", k.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: keep\r\nContent-Length: 11\r\n\r\nhello", helloHash) // never finished
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	k.proc.Signal(syscall.SIGTERM)
	err, exited := k.proc.Wait(6 * time.Second)
	if !exited || err != nil || time.Since(start) > 5*time.Second {
		t.Fatalf("after SIGTERM: exited=%v err=%v after %v\n%s", exited, err, time.Since(start), k.proc.Output())
	}
	if !strings.Contains(k.proc.Output(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log:\n%s", k.proc.Output())
	}
}

// TestKillDuringPut: SIGKILL in the middle of a 64 MiB PUT leaves no
// partial block: after a restart on the same directory the block is
// absent from GET and the index, and a full PUT then works.
func TestKillDuringPut(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "vol")
	os.Mkdir(root, 0o755)
	k := startKS(t, secretsYAML(t, dir)+"require_signatures: false\nvolumes:\n"+dirVolume(root, ""))
	data, h := volumetest.Block(64, blockstore.MaxBlockSize)
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("PUT", k.url+"/"+h.String(), pr)
	req.ContentLength = int64(len(data))
	go func() {
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	for off := 0; off < len(data)/2; off += 1 << 20 {
		if _, err := pw.Write(data[off : off+1<<20]); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the server has written part of the block to disk.
	sub := filepath.Join(root, h.String()[:3])
	deadline := time.Now().Add(10 * time.Second)
	for {
		entries, _ := os.ReadDir(sub)
		var partial int64
		for _, e := range entries {
			if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") {
				partial = fi.Size()
			}
		}
		if partial > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no partial temp file appeared in %s: %v", sub, entries)
		}
		time.Sleep(20 * time.Millisecond)
	}
	k.proc.Kill()
	pw.CloseWithError(fmt.Errorf("killed"))

	k.start() // same config, same directory
	loc := fmt.Sprintf("/%s+%d", h, len(data))
	k.want(k.do("GET", loc, nil), 404, "")
	k.want(k.do("HEAD", loc, nil), 404, "")
	r := k.do("GET", "/index", nil, auth(e2eAdmin))
	if r.code != 200 || strings.Contains(r.body, h.String()) || r.body != "\n" {
		t.Fatalf("index after the crash: %d %q", r.code, r.body)
	}
	entries, _ := os.ReadDir(sub)
	for _, e := range entries {
		t.Errorf("left on disk after the restart: %s", e.Name())
	}

	r = k.do("PUT", "/"+h.String(), bytes.NewReader(data))
	k.want(r, 200, h.String()+"+67108864")
	res, err := client.Get(k.url + loc)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sum := md5.New()
	n, err := io.Copy(sum, res.Body)
	if res.StatusCode != 200 || err != nil || n != int64(len(data)) || blockstore.Hash(sum.Sum(nil)) != h {
		t.Fatalf("GET after the re-PUT: %d, %d bytes, %v", res.StatusCode, n, err)
	}
}
