package nodehttp

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
)

// blockRange keeps keepstore's rule: a malformed or multi-range header is
// ignored (the whole block); a range that starts at or past the end, and
// "bytes=-0", is 416.
func TestBlockRange(t *testing.T) {
	const size = 100
	for _, c := range []struct {
		h     string
		off   int64
		n     int64
		bad   bool
		whole bool
	}{
		{h: "", whole: true},
		{h: "bytes=0-9", off: 0, n: 10},
		{h: "bytes=90-", off: 90, n: 10},
		{h: "bytes=50-5000", off: 50, n: 50},
		{h: "bytes=-5", off: 95, n: 5},
		{h: "bytes=-500", off: 0, n: 100},
		{h: "bytes=0-99", off: 0, n: 100},
		{h: "bytes=100-", bad: true},
		{h: "bytes=200-300", bad: true},
		{h: "bytes=-0", bad: true},
		{h: "bytes=-00", bad: true},
		{h: "bytes=1-2,5-6", whole: true},
		{h: "items=1-2", whole: true},
		{h: "bytes=9-3", whole: true},
		{h: "bytes=5", whole: true},
		{h: "bytes=-", whole: true},
		{h: "bytes=-x", whole: true},
		{h: "bytes=--5", whole: true},
		{h: "bytes=a-b", whole: true},
		{h: "bytes=-5-", whole: true},
	} {
		off, n, err := blockRange(c.h, size)
		switch {
		case c.bad:
			if !blockstore.Is(err, blockstore.KindBadRange) {
				t.Errorf("%q: %d %d %v, want BadRange", c.h, off, n, err)
			}
		case c.whole:
			if off != 0 || n != -1 || err != nil {
				t.Errorf("%q: %d %d %v, want the whole block", c.h, off, n, err)
			}
		case off != c.off || n != c.n || err != nil:
			t.Errorf("%q: %d %d %v, want %d %d", c.h, off, n, err, c.off, c.n)
		}
	}
}

// Several handlers may serve one node: they share its request metrics
// (registered once) and its request cap.
func TestTwoHandlersOneNode(t *testing.T) {
	e, _ := oneMount(t)
	other := New(e.n, withWriteToken(e.http, "w"))
	rec := httptest.NewRecorder()
	other.ServeHTTP(rec, httptest.NewRequest("PUT", "/"+helloHash, bytes.NewReader(hello)))
	if rec.Code != 401 {
		t.Fatalf("PUT without the write token: %d", rec.Code)
	}
	e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 200, helloHash+"+11")
	m := e.metric("keepstore_requests_total")
	if !strings.Contains(m, `code="401",method="PUT"} 1`) || !strings.Contains(m, `code="200",method="PUT"} 1`) {
		t.Fatalf("request metrics of both handlers: %q", m)
	}
}
