package testenv

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// InsecureClient talks to the test nginx with its self-signed certificate.
var InsecureClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 16}}

// NginxFront renders deploy/nginx/keepproxy.conf.in for upstreams and
// starts nginx on a free loopback port; it returns the https base URL.
func NginxFront(t testing.TB, upstreams ...string) (string, *Proc) {
	t.Helper()
	nginx := LookPath(t, "nginx")
	openssl := LookPath(t, "openssl")
	dir := t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if out, err := exec.Command(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
		"-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	addr := FreeAddr(t)
	render := exec.Command("sh", filepath.Join(RepoRoot(), "deploy/nginx/render.sh"))
	render.Env = append(os.Environ(), "SERVER_NAME=localhost", "LISTEN="+addr, "UPSTREAM="+upstreams[0], "SSL_CERT="+cert, "SSL_KEY="+key, "ACCESS_LOG=/dev/stdout")
	site, err := render.Output()
	if err != nil {
		t.Fatalf("render.sh: %v", err)
	}
	if bytes.Contains(site, []byte("@")) && bytes.Contains(site, []byte("@UPSTREAM@")) {
		t.Fatal("placeholders left in the rendered config")
	}
	// Extra upstream servers, as the commented example in the file shows.
	var extra strings.Builder
	for _, u := range upstreams[1:] {
		fmt.Fprintf(&extra, "    server %s max_fails=3 fail_timeout=10s;\n", u)
	}
	site = bytes.Replace(site, []byte("    keepalive 32;"), []byte(extra.String()+"    keepalive 32;"), 1)
	url, p := startNginx(t, nginx, dir, site, addr)
	return url, p
}

// startNginx writes site into an nginx.conf of its own under dir and runs
// nginx until https://addr answers.
func startNginx(t testing.TB, nginx, dir string, site []byte, addr string) (string, *Proc) {
	WriteFile(t, dir, "keepproxy.conf", string(site))
	conf := fmt.Sprintf(`worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/logs/error.log info;
events { worker_connections 256; }
http {
    access_log %[1]s/logs/access.log;
    client_body_temp_path %[1]s/tmp/body;
    proxy_temp_path %[1]s/tmp/proxy;
    fastcgi_temp_path %[1]s/tmp/fastcgi;
    uwsgi_temp_path %[1]s/tmp/uwsgi;
    scgi_temp_path %[1]s/tmp/scgi;
    include %[1]s/keepproxy.conf;
}
`, dir)
	confPath := WriteFile(t, dir, "nginx.conf", conf)
	if out, err := exec.Command(nginx, "-t", "-p", dir, "-c", confPath).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t rejected the shipped config: %v\n%s", err, out)
	}
	p := Start(t, nginx, []string{"-p", dir, "-c", confPath, "-g", "daemon off;"})
	url := "https://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := InsecureClient.Get(url + "/_health/ping"); err == nil {
			resp.Body.Close()
			return url, p
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nginx did not come up:\n%s", p.Output())
	return "", nil
}

// NginxTenants renders the shipped config for several names (TENANTS, one
// self-signed certificate each, plus the default server that answers 421)
// in front of upstream, and starts nginx; it returns the address. Reach a
// name with TenantClient.
func NginxTenants(t testing.TB, upstream string, names ...string) (string, *Proc) {
	t.Helper()
	nginx := LookPath(t, "nginx")
	openssl := LookPath(t, "openssl")
	dir := t.TempDir()
	for _, d := range []string{"logs", "tmp"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	var tenants []string
	for i, n := range names {
		cert, key := filepath.Join(dir, fmt.Sprintf("cert%d.pem", i)), filepath.Join(dir, fmt.Sprintf("key%d.pem", i))
		if out, err := exec.Command(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN="+n,
			"-addext", "subjectAltName=DNS:"+n, "-keyout", key, "-out", cert).CombinedOutput(); err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		tenants = append(tenants, n+"="+cert+":"+key)
	}
	addr := FreeAddr(t)
	render := exec.Command("sh", filepath.Join(RepoRoot(), "deploy/nginx/render.sh"))
	render.Env = append(os.Environ(), "TENANTS="+strings.Join(tenants, " "), "LISTEN="+addr, "UPSTREAM="+upstream, "ACCESS_LOG=/dev/stdout")
	site, err := render.Output()
	if err != nil {
		t.Fatalf("render.sh with TENANTS: %v", err)
	}
	_, p := startNginx(t, nginx, dir, site, addr)
	return addr, p
}

// TenantClient reaches every name at addr (the test's nginx), with SNI and
// Host from the URL, certificates unchecked (self-signed).
func TenantClient(addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: true},
		MaxIdleConnsPerHost: 8,
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
}
