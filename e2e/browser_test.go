package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/gateway/web"
	"github.com/keepgate/keepgate/internal/testenv"
)

// TestBrowserUploader runs the uploader in headless Chromium against one
// real cluster behind nginx TLS:
//
//   - ConfiguredProxy: the page is hosted on another origin whose operator
//     lists the proxy in config.json; a 70 MiB file goes through a real
//     CORS preflight to it and is read back and compared.
//   - OwnOriginOnly: the page served by keepproxy itself at /_upload/ is
//     pointed at a hostile server through its query string and through a
//     value an earlier visit left in localStorage; the hostile server must
//     get no request at all and the upload must land on the page's origin.
//   - BadConfig: a config.json that is malformed or lists no usable proxy
//     leaves the page's own origin as the only proxy.
func TestBrowserUploader(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	proxyURL, _ := testenv.NginxFront(t, c.ProxyAddr)
	proxyLog := func() string { return tail(c.Proxy.Output(), 3000) }

	t.Run("ConfiguredProxy", func(t *testing.T) {
		// Besides the proxy (written with a trailing slash), the list holds
		// entries the page must drop and a second valid one that must be
		// offered but not chosen.
		second := "https://second.keep.invalid"
		cfg := fmt.Sprintf(`{"proxies": [%q, "javascript:alert(1)", "ftp://keep.example.org", "/relative", "not a url", %q]}`,
			proxyURL+"/", second+"//")
		page := pageServer(t, map[string]string{"/site/": cfg})
		ctx := newBrowser(t, chromium, 3*time.Minute)

		data, _ := volumetest.Block(77, 70<<20)
		file := filepath.Join(t.TempDir(), "seventy MiB ü.bin")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		err := chromedp.Do(ctx,
			chromedp.Navigate(page.URL+"/site/index.html"),
			chromedp.WaitReady(chromedp.CSS("#proxy[data-ready]")),
		)
		if err != nil {
			t.Fatalf("browser: %v", err)
		}
		opts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.getElementById("proxy").options, function (o) { return o.value; })`))
		if err != nil || !reflect.DeepEqual(opts, []string{proxyURL, second}) {
			t.Fatalf("proxies offered: %q (%v), want %q", opts, err, []string{proxyURL, second})
		}
		if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("proxy"))); v != proxyURL {
			t.Fatalf("chosen proxy %q, want the first listed, %q", v, proxyURL)
		}
		if s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("target"))); !strings.Contains(s, proxyURL) {
			t.Fatalf("page does not show the target proxy: %q", s)
		}
		err = chromedp.Do(ctx,
			chromedp.SetValue(chromedp.ID("token"), testenv.TokenRW),
			chromedp.SetValue(chromedp.ID("replicas"), "2"),
			chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
			chromedp.Click(chromedp.ID("upload")),
			chromedp.WaitVisible(chromedp.CSS("#status[data-result]")),
		)
		if err != nil {
			t.Fatalf("browser: %v\nproxy log:\n%s", err, proxyLog())
		}
		status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
		result, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("status"), "data-result"))
		loc, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("status"), "data-locator"))
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err == nil {
			dir := filepath.Join(testenv.RepoRoot(), ".cache", "artifacts")
			os.MkdirAll(dir, 0o755)
			os.WriteFile(filepath.Join(dir, "uploader-finished.png"), png, 0o644)
		}
		if result.Value != "ok" || !loc.Exists {
			t.Fatalf("upload did not finish: %q %q\nproxy log:\n%s", result.Value, status, proxyLog())
		}
		// Read the manifest and the file back through nginx.
		fields := readManifest(t, proxyURL, loc.Value)
		wantSeg := fmt.Sprintf("0:%d:seventy\\040MiB\\040ü.bin", len(data))
		if fields[len(fields)-1] != wantSeg {
			t.Fatalf("file segment %q, want %q", fields[len(fields)-1], wantSeg)
		}
		var got bytes.Buffer
		for _, l := range fields[1 : len(fields)-1] {
			got.Write(getBlock(t, proxyURL, l))
		}
		if md5.Sum(got.Bytes()) != md5.Sum(data) {
			t.Fatalf("file read back differs (%d bytes, want %d)", got.Len(), len(data))
		}
		if n := len(fields) - 2; n != 2 {
			t.Fatalf("%d blocks for 70 MiB, want 2", n)
		}
		// The keep CLI fetches the browser's upload through nginx (TLS with a
		// self-signed certificate, hence --insecure) and gets the same bytes.
		k := newKeepCLI(t, proxyURL)
		dest := t.TempDir()
		_, errs, code := k.run("get", "--insecure", "--quiet", loc.Value, dest)
		if code != 0 || !strings.Contains(errs, "WARNING: --insecure") {
			t.Fatalf("keep get --insecure: exit %d, stderr %q", code, errs)
		}
		back, err := os.ReadFile(filepath.Join(dest, "seventy MiB ü.bin"))
		if err != nil || !bytes.Equal(back, data) {
			t.Fatalf("keep get of the browser upload: %v, %d bytes, equal=%v", err, len(back), bytes.Equal(back, data))
		}
	})

	t.Run("OwnOriginOnly", func(t *testing.T) {
		evil := newEvilServer(t)
		own := proxyURL + "/_upload/"
		for i, tc := range []struct {
			name, url  string
			savedProxy bool
		}{
			{"query", own + "?proxy=" + url.QueryEscape(evil.URL), false},
			{"localStorage", own, true},
			{"both", own + "index.html?proxy=" + url.QueryEscape(evil.URL), true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx := newBrowser(t, chromium, time.Minute)
				before := len(evil.seen())
				data, _ := volumetest.Block(uint64(900+i), 100<<10+i)
				name := "small-" + tc.name + ".bin"
				file := filepath.Join(t.TempDir(), name)
				if err := os.WriteFile(file, data, 0o600); err != nil {
					t.Fatal(err)
				}
				steps := []chromedp.Action[chromedp.Void]{}
				if tc.savedProxy {
					// What an earlier visit (or a page on this origin) left behind.
					steps = append(steps, chromedp.Navigate(own),
						chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`localStorage.setItem("keepgate.proxy", %q)`, evil.URL)))
				}
				steps = append(steps,
					chromedp.Navigate(tc.url),
					chromedp.SetValue(chromedp.ID("token"), testenv.TokenRW),
					chromedp.SetValue(chromedp.ID("replicas"), "2"),
					chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
					chromedp.Click(chromedp.ID("upload")),
					chromedp.WaitVisible(chromedp.CSS("#status[data-result]")),
				)
				if err := chromedp.Do(ctx, steps...); err != nil {
					t.Fatalf("browser: %v\nevil server saw: %q\nproxy log:\n%s", err, evil.seen()[before:], proxyLog())
				}
				if seen := evil.seen()[before:]; len(seen) != 0 {
					t.Fatalf("the page sent %d request(s) to the server named in its URL or localStorage: %q", len(seen), seen)
				}
				status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
				result, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("status"), "data-result"))
				loc, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("status"), "data-locator"))
				if result.Value != "ok" || !loc.Exists {
					t.Fatalf("upload did not finish: %q %q\nproxy log:\n%s", result.Value, status, proxyLog())
				}
				if v, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("proxy"))); v != proxyURL {
					t.Fatalf("proxy %q, want the page's origin %q", v, proxyURL)
				}
				if s, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("target"))); !strings.Contains(s, proxyURL) {
					t.Fatalf("page does not show the target proxy: %q", s)
				}
				saved, err := chromedp.Run(ctx, chromedp.Evaluate[*string](`localStorage.getItem("keepgate.proxy")`))
				if err != nil || saved != nil {
					t.Fatalf("localStorage keepgate.proxy after the upload: %v %v, want it removed", saved, err)
				}
				fields := readManifest(t, proxyURL, loc.Value)
				if want := fmt.Sprintf("0:%d:%s", len(data), name); len(fields) != 3 || fields[2] != want {
					t.Fatalf("manifest %q, want one block and segment %q", fields, want)
				}
				if back := getBlock(t, proxyURL, fields[1]); !bytes.Equal(back, data) {
					t.Fatalf("block read back through the proxy differs (%d bytes, want %d)", len(back), len(data))
				}
			})
		}
		if seen := evil.seen(); len(seen) != 0 {
			t.Errorf("evil server saw %d request(s) in all", len(seen))
		}
	})

	t.Run("BadConfig", func(t *testing.T) {
		page := pageServer(t, map[string]string{
			"/broken/":   `{"proxies": [`,
			"/unusable/": `{"proxies": ["javascript:alert(1)", "file:///etc/passwd", "https://user:pw@keep.example.org", 7]}`,
			"/notlist/":  `{"proxies": "https://keep.example.org"}`,
			"/absent/":   "",
		})
		ctx := newBrowser(t, chromium, time.Minute)
		for _, dir := range []string{"/broken/", "/unusable/", "/notlist/", "/absent/"} {
			err := chromedp.Do(ctx,
				chromedp.Navigate(page.URL+dir+"?proxy="+url.QueryEscape(proxyURL)),
				chromedp.WaitReady(chromedp.CSS("#proxy[data-ready]")),
			)
			if err != nil {
				t.Fatalf("%s: browser: %v", dir, err)
			}
			opts, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`Array.from(document.getElementById("proxy").options, function (o) { return o.value; })`))
			if err != nil || !reflect.DeepEqual(opts, []string{page.URL}) {
				t.Fatalf("%s: proxies offered %q (%v), want only the page's origin %q", dir, opts, err, page.URL)
			}
		}
	})
}

// newBrowser starts a headless Chromium with a fresh profile; it is closed
// when the test ends.
func newBrowser(t *testing.T, chromium string, timeout time.Duration, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1000, 700)}, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelT(); cancel(); cancelA() })
	return ctx
}

// pageServer serves the uploader under each key of configs (a directory
// such as "/site/"), with that value as its config.json ("" for none, a
// 404).
func pageServer(t *testing.T, configs map[string]string) *httptest.Server {
	return pageServerOn(t, "", configs)
}

// pageServerOn is pageServer listening on addr ("": any free port).
func pageServerOn(t *testing.T, addr string, configs map[string]string) *httptest.Server {
	mux := http.NewServeMux()
	for dir, cfg := range configs {
		mux.Handle(dir, http.StripPrefix(dir, http.FileServer(web.FS())))
		if cfg != "" {
			mux.HandleFunc(dir+"config.json", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				io.WriteString(w, cfg)
			})
		}
	}
	s := httptest.NewUnstartedServer(mux)
	if addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		s.Listener.Close()
		s.Listener = ln
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// evilServer records every request it gets. It answers like a permissive
// keepproxy (CORS for any origin, a locator for any PUT), so a page that
// talked to it would believe its upload had worked.
type evilServer struct {
	*httptest.Server
	mu  sync.Mutex
	log []string
}

func newEvilServer(t *testing.T) *evilServer {
	e := &evilServer{}
	e.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.log = append(e.log, fmt.Sprintf("%s %s auth=%q len=%d", r.Method, r.URL, r.Header.Get("Authorization"), len(body)))
		e.mu.Unlock()
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("Access-Control-Allow-Methods", "GET, PUT, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, X-Keep-Desired-Replicas")
		h.Set("Access-Control-Allow-Private-Network", "true")
		if r.Method == http.MethodPut {
			fmt.Fprintf(w, "%s+%d\n", strings.TrimPrefix(r.URL.Path, "/"), len(body))
		}
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *evilServer) seen() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.log...)
}

// getBlock reads one block through the proxy.
func getBlock(t *testing.T, proxyURL, loc string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", proxyURL+"/"+loc, nil)
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	resp, err := testenv.InsecureClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", loc, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v %q", loc, resp.StatusCode, err, tail(string(b), 300))
	}
	return b
}

// readManifest reads a one-stream manifest block and returns its fields.
func readManifest(t *testing.T, proxyURL, loc string) []string {
	t.Helper()
	manifest := string(getBlock(t, proxyURL, loc))
	fields := strings.Fields(manifest)
	if len(fields) < 3 || fields[0] != "." || !strings.HasSuffix(manifest, "\n") {
		t.Fatalf("manifest: %q", manifest)
	}
	return fields
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
