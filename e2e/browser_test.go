package e2e

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/gateway/web"
	"github.com/keepgate/keepgate/internal/testenv"
)

// TestBrowserUploader loads the uploader from one origin in headless
// Chromium and uploads a 70 MiB file through nginx TLS to keepproxy on
// another origin (a real CORS preflight), then reads the manifest and the
// file back and compares bytes.
func TestBrowserUploader(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	c := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 3})
	proxyURL, _ := testenv.NginxFront(t, c.ProxyAddr)
	page := httptest.NewServer(http.FileServer(web.FS()))
	defer page.Close()

	data, _ := volumetest.Block(77, 70<<20)
	file := filepath.Join(t.TempDir(), "seventy MiB ü.bin")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true), chromedp.WindowSize(1000, 700))
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 3*time.Minute)
	defer cancelT()

	err := chromedp.Do(ctx,
		chromedp.Navigate(page.URL+"/index.html?proxy="+proxyURL),
		chromedp.SetValue(chromedp.ID("token"), testenv.TokenRW),
		chromedp.SetValue(chromedp.ID("replicas"), "2"),
		chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
		chromedp.Click(chromedp.ID("upload")),
		chromedp.WaitVisible(chromedp.CSS("#status[data-result]")),
	)
	if err != nil {
		t.Fatalf("browser: %v\nproxy log:\n%s", err, tail(c.Proxy.Output(), 3000))
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
		t.Fatalf("upload did not finish: %q %q", result.Value, status)
	}
	// Read the manifest and the file back through nginx.
	get := func(l string) []byte {
		req, _ := http.NewRequest("GET", proxyURL+"/"+l, nil)
		req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
		resp, err := testenv.InsecureClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %v %v", l, err, resp)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	manifest := string(get(loc.Value))
	fields := strings.Fields(manifest)
	if len(fields) < 3 || fields[0] != "." || !strings.HasSuffix(manifest, "\n") {
		t.Fatalf("manifest: %q", manifest)
	}
	wantSeg := fmt.Sprintf("0:%d:seventy\\040MiB\\040ü.bin", len(data))
	if fields[len(fields)-1] != wantSeg {
		t.Fatalf("file segment %q, want %q", fields[len(fields)-1], wantSeg)
	}
	var got bytes.Buffer
	for _, l := range fields[1 : len(fields)-1] {
		got.Write(get(l))
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
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
