package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// The browser uploader through a tenant's name: from that tenant's own
// site it uploads (CORS granted to that origin only), from another
// tenant's site the browser refuses (no CORS grant).
func TestBrowserUploaderPerTenant(t *testing.T) {
	chromium := testenv.LookPath(t, "chromium")
	pageAddr := testenv.FreeAddr(t) // the tenants' sites, served once nginx's port is known
	_, pagePort, _ := strings.Cut(pageAddr, ":")
	originA := "http://upload.a.test:" + pagePort
	originB := "http://upload.b.test:" + pagePort
	c := startTenants(t, fmt.Sprintf(`rules:
  - name: a
    hosts: [keep.a.test]
    storages: [tenant-a]
    cors_origins: [%s]
  - name: b
    hosts: [keep.b.test]
    storages: [tenant-b]
    cors_origins: [%s]
`, originA, originB))
	addr, _ := testenv.NginxTenants(t, c.ProxyAddr, "keep.a.test", "keep.b.test")
	_, port, _ := strings.Cut(addr, ":")
	pageServerOn(t, pageAddr, map[string]string{"/site/": fmt.Sprintf(`{"proxies": [%q]}`, "https://keep.a.test:"+port)})
	idA, secA := c.createKey(t, `{"storage":{"name":"tenant-a"}}`)
	ctx := newBrowser(t, chromium, 2*time.Minute, chromedp.Flag("host-resolver-rules", "MAP *.test 127.0.0.1"))
	data, h := volumetest.Block(88, 200<<10)
	file := filepath.Join(t.TempDir(), "tenant-a.bin")
	os.WriteFile(file, data, 0o600)
	upload := func(origin string) (string, string) {
		t.Helper()
		err := chromedp.Do(ctx,
			chromedp.Navigate(origin+"/site/index.html"),
			chromedp.WaitReady(chromedp.CSS("#proxy[data-ready]")),
			chromedp.SetValue(chromedp.ID("token"), "v2/"+idA+"/"+secA),
			chromedp.SetValue(chromedp.ID("replicas"), "1"),
			chromedp.SetUploadFiles(chromedp.ID("file"), []string{file}),
			chromedp.Click(chromedp.ID("upload")),
			chromedp.WaitVisible(chromedp.CSS("#status[data-result]")),
		)
		if err != nil {
			t.Fatalf("browser from %s: %v\nproxy log:\n%s", origin, err, tail(c.Proxy.Output(), 3000))
		}
		result, _ := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("status"), "data-result"))
		status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.ID("status")))
		return result.Value, status
	}
	if result, status := upload(originA); result != "ok" {
		t.Fatalf("upload from tenant a's own site: %q %q", result, status)
	}
	if !c.Stores[0].Has(h.String()) && !c.Stores[1].Has(h.String()) {
		t.Fatal("the browser's block is not in tenant-a's storage")
	}
	if result, status := upload(originB); result == "ok" {
		t.Fatalf("upload to a's name from b's site succeeded: %q", status)
	}
	// The browser stopped at the preflight: keepproxy saw one PUT of the
	// block (the first upload's), per its audit log.
	if n := strings.Count(c.Proxy.Output(), `"op":"put","block":"`+h.String()+`+`); n != 1 {
		t.Fatalf("%d PUTs of the block reached keepproxy, want 1", n)
	}
}
