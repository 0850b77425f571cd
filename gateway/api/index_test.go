package gatewayapi

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/node"
	"github.com/keepgate/keepgate/blockstore/node/nodehttp"
	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/placement"
)

// /index streams each store's index; a store whose index breaks off aborts
// the response (never a terminating blank line), and a store that cannot
// be asked at all before anything was sent is a 502.
func TestIndexStreamsAndNeverLooksComplete(t *testing.T) {
	vol := memvolume.New(blockstore.TrashPolicy{})
	data, h := volumetest.Block(5, 1000)
	if err := vol.Put(t.Context(), h, strings.NewReader(string(data)), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	n, err := node.New(node.Options{Mounts: []node.Mount{{UUID: "zzzzz-nyw5e-000000000000000", Volume: vol}},
		Signer: &blockstore.Signer{Key: []byte("indexsigningkey0123456789abcdefghijklmnopqrstuvwxyz"), TTL: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	good := httptest.NewServer(nodehttp.New(n, nodehttp.Options{AdminToken: "store-admin-token-0123456789"}))
	t.Cleanup(good.Close)
	// Fault injection: an index that stops without its blank line.
	broken := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%032x+5 1700000000\n", 7)
	}))
	t.Cleanup(broken.Close)
	for _, tc := range []struct {
		name  string
		order []string
	}{{"broken second", []string{good.URL, broken.URL}}, {"broken first", []string{broken.URL, good.URL}}, {"good only", []string{good.URL}}, {"unreachable first", []string{"http://127.0.0.1:1", good.URL}}} {
		var svcs []placement.Service
		for i, u := range tc.order {
			svcs = append(svcs, placement.Service{UUID: fmt.Sprintf("zzzzz-bi6l4-%015d", i), URL: u})
		}
		c := newCluster(t, 0, func(o *Options) { o.Services, o.StoreAdminToken = svcs, "store-admin-token-0123456789" })
		req, _ := http.NewRequest("GET", c.srv.URL+"/index", nil)
		req.Header.Set("Authorization", "Bearer "+tokAdmin)
		resp, err := http.DefaultClient.Do(req)
		var body []byte
		rerr := err
		if err == nil {
			body, rerr = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		switch tc.name {
		case "broken second", "broken first":
			if rerr == nil || strings.HasSuffix(string(body), "\n\n") {
				t.Errorf("%s: read error %v, body %q: want an aborted response", tc.name, rerr, body)
			}
		case "unreachable first":
			if err != nil || resp.StatusCode != 502 || !strings.Contains(string(body), "index request to a keep store failed") {
				t.Errorf("%s: %v %q", tc.name, err, body)
			}
		default:
			if resp.StatusCode != 200 || rerr != nil || !strings.HasPrefix(string(body), h.String()+"+1000 ") || !strings.HasSuffix(string(body), "\n\n") {
				t.Errorf("%s: %d %v %q", tc.name, resp.StatusCode, rerr, body)
			}
		}
	}
}
