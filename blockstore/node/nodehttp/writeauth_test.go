package nodehttp

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

const writeTok = "store-write-token-0123456789"

// writeTokenEnv is oneMount served by New(n, Options{WriteToken: writeTok}).
func writeTokenEnv(t *testing.T) *env {
	e, _ := oneMount(t)
	h := New(e.n, withWriteToken(e.http, writeTok))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	we := *e
	we.h, we.srv = h, srv
	return &we
}

func TestWriteToken(t *testing.T) {
	e := writeTokenEnv(t)
	put := func(hdr ...string) resp { return e.do("PUT", "/"+helloHash, bytes.NewReader(hello), hdr...) }
	e.expect(put(), 401, "Unauthorized: this keepstore stores blocks only for its write token")
	e.expect(put(bearer(userToken)), 403, "Forbidden: this keepstore stores blocks only for its write token")
	e.expect(put(bearer(mgmtTok)), 403, "Forbidden")
	e.expect(put(bearer(writeTok+"x")), 403, "Forbidden")
	e.expect(put(bearer(writeTok[:len(writeTok)-1])), 403, "Forbidden")
	// Only the Authorization header carries it (not api_token, not Basic).
	e.expect(e.do("PUT", "/"+helloHash+"?api_token="+writeTok, bytes.NewReader(hello)), 401, "Unauthorized")
	e.expect(put("Authorization: Basic "+"eDp"+writeTok), 401, "Unauthorized")
	// Nothing was stored by the refused PUTs.
	if r := e.do("GET", "/index", nil, bearer(adminTok)); r.Code != 200 || r.Body != "\n" {
		t.Fatalf("index after refused PUTs: %d %q", r.Code, r.Body)
	}

	// The write token stores, and the locator is signed for it (the token
	// of the request), as always.
	r := put(bearer(writeTok))
	e.expect(r, 200, helloHash+"+11+A")
	loc, err := blockstore.ParseLocator(strings.TrimSpace(r.Body))
	if err != nil {
		t.Fatal(err)
	}
	signer := &blockstore.Signer{Key: []byte(testKey), TTL: 336 * time.Hour}
	if err := signer.Verify(loc, writeTok); err != nil {
		t.Fatalf("locator not signed for the write token: %v", err)
	}
	e.expect(put("Authorization: OAuth2 "+writeTok), 200, helloHash+"+11+A")
	// The admin token may write too.
	e.expect(put(bearer(adminTok)), 200, helloHash+"+11+A")

	// Reads are unaffected: any token with a signature made for it.
	userLoc := signer.Sign(loc.WithoutHints(), userToken).String()
	e.expect(e.do("GET", "/"+userLoc, nil, bearer(userToken)), 200, string(hello))
	// The write token is no admin token.
	e.expect(e.do("GET", "/index", nil, bearer(writeTok)), 403, "Forbidden")
	e.expect(e.do("DELETE", "/"+helloHash+"+11", nil, bearer(writeTok)), 403, "Forbidden")
}

// A PUT without the token is refused before its body is read: with
// Expect: 100-continue the client never has to send it.
func TestWriteTokenBeforeBody(t *testing.T) {
	e := writeTokenEnv(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "PUT /%s HTTP/1.1\r\nHost: keep\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n", helloHash)
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Fatalf("PUT without a token: %d, want 401 before 100 Continue", res.StatusCode)
	}
}

// Without a write token (Options{}), anyone in the allowed networks writes,
// as with Arvados' keepstore.
func TestNoWriteTokenConfigured(t *testing.T) {
	e, _ := oneMount(t)
	e.expect(e.do("PUT", "/"+helloHash, bytes.NewReader(hello)), 200, helloHash+"+11")
}

func TestCheckWriteToken(t *testing.T) {
	cases := []struct {
		got, admin string
		want       blockstore.Kind
		ok         bool
	}{
		{"", "adm", blockstore.KindNoToken, false},
		{"w", "adm", 0, true},
		{"adm", "adm", 0, true},
		{"", "", blockstore.KindNoToken, false},
		{"x", "", blockstore.KindForbidden, false},
		{"adm", "", blockstore.KindForbidden, false},
	}
	for _, c := range cases {
		err := checkWriteToken(c.got, "w", c.admin)
		if (err == nil) != c.ok || (err != nil && blockstore.KindOf(err) != c.want) {
			t.Errorf("got %q admin %q: %v", c.got, c.admin, err)
		}
	}
}
