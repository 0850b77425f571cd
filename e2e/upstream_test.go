package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore/volumetest"
	"github.com/keepgate/keepgate/internal/testenv"
)

// A keepgate whose storage is another keepgate cluster (real processes),
// in both identity modes.
func TestUpstreamStorages(t *testing.T) {
	up := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 2})
	svcTok := testenv.WriteSecret(t, t.TempDir(), "partner.token", testenv.TokenRW)
	squashed := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, ProxyExtra: fmt.Sprintf(
		"storages:\n  partner: {upstream: %s, identity: squashed, token_file: %s}\ndefault_storage: partner\n", up.ProxyURL, svcTok)})
	individual := testenv.StartCluster(t, testenv.ClusterOptions{Stores: 1, ProxyExtra: fmt.Sprintf(
		"storages:\n  partner: {upstream: %s, identity: individual}\ndefault_storage: partner\n", up.ProxyURL)})

	for _, tc := range []struct {
		name string
		c    *testenv.Cluster
	}{{"squashed", squashed}, {"individual", individual}} {
		data, h := volumetest.Block(uint64(len(tc.name)), 5<<20+17)
		resp, loc := put(t, tc.c, data, 2)
		if resp.StatusCode != 200 || resp.Header.Get("X-Keep-Replicas-Stored") != "2" {
			t.Fatalf("%s: PUT %d %q", tc.name, resp.StatusCode, loc)
		}
		if !up.Stores[0].Has(h.String()) || !up.Stores[1].Has(h.String()) || tc.c.Stores[0].Has(h.String()) {
			t.Fatalf("%s: the block is not on the upstream's two stores only", tc.name)
		}
		resp, got := request(t, "GET", tc.c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, nil)
		if resp.StatusCode != 200 || got != string(data) {
			t.Fatalf("%s: GET %d", tc.name, resp.StatusCode)
		}
		resp, got = request(t, "GET", tc.c.ProxyURL+"/"+loc, testenv.TokenRW, nil, 0, map[string]string{"Range": "bytes=5000-5009"})
		if resp.StatusCode != 206 || got != string(data[5000:5010]) {
			t.Fatalf("%s: range GET %d", tc.name, resp.StatusCode)
		}
		if tc.name == "squashed" {
			if !strings.Contains(loc, "+R") {
				t.Fatalf("squashed locator %q has no upstream signature hint", loc)
			}
			// The read-only principal cannot use the read-write one's locator.
			if resp, _ := request(t, "GET", tc.c.ProxyURL+"/"+loc, testenv.TokenRO, nil, 0, nil); resp.StatusCode != 422 {
				t.Fatalf("squashed: another principal's locator: %d", resp.StatusCode)
			}
		}
	}
	// The upstream down: a clear 502, never a short 200.
	up.Proxy.Kill()
	data, h := volumetest.Block(5, 1000)
	req, _ := http.NewRequest("PUT", squashed.ProxyURL+"/"+h.String(), bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+testenv.TokenRW)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 {
		t.Fatalf("PUT with the upstream down: %d", resp.StatusCode)
	}
}
