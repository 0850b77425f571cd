package gateway

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/metering"
)

// Service is one keepstore the gateway talks to.
type Service struct {
	UUID     string // rendezvous identity; the last 15 characters are hashed
	URL      string // base URL, e.g. http://10.0.0.5:25107
	ReadOnly bool   // never written to
}

// SyntheticUUID gives a store configured only by URL the UUID Arvados'
// keepproxy would give it: <cluster>-bi6l4-<first 15 hex of md5(url)>.
func SyntheticUUID(cluster, url string) string {
	sum := md5.Sum([]byte(url))
	return cluster + "-bi6l4-" + hex.EncodeToString(sum[:])[:15]
}

// upstream is the HTTP client side of the Keep protocol toward keepstores.
type upstream struct {
	client *http.Client
}

func newUpstream(rt http.RoundTripper) *upstream {
	if rt == nil {
		rt = &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   4 * time.Second,
			ResponseHeaderTimeout: 2 * time.Minute,
			ExpectContinueTimeout: time.Second,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			DisableCompression:    true,
			WriteBufferSize:       256 << 10,
			ReadBufferSize:        256 << 10,
		}
	}
	return &upstream{client: &http.Client{Transport: rt, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type putHeaders struct {
	token     string
	replicas  int
	classes   []string
	requestID string
}

type putReply struct {
	locator   string
	replicas  int
	confirmed map[string]int // nil when the store sent no Confirmed header
}

// put sends one block to one store.
func (u *upstream) put(ctx context.Context, svc Service, h blockstore.Hash, size int64, body io.Reader, hd putHeaders) (putReply, error) {
	metering.Touch(ctx, svc.UUID)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, svc.URL+"/"+h.String(), nil)
	if err != nil {
		return putReply{}, blockstore.E("upstream.put", blockstore.KindInternal, err)
	}
	req.ContentLength = size
	if size > 0 {
		req.Body = io.NopCloser(body)
		// A store that refuses (full, busy, bad token) answers before any
		// byte is sent, so it can still be replaced from offset 0.
		req.Header.Set("Expect", "100-continue")
	} else {
		req.Body = http.NoBody
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	u.setCommon(req, hd.token, hd.requestID)
	req.Header.Set(keepwire.DesiredReplicas, strconv.Itoa(hd.replicas))
	if len(hd.classes) > 0 {
		req.Header.Set(keepwire.StorageClasses, strings.Join(hd.classes, ", "))
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return putReply{}, upstreamErr(svc, err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return putReply{}, statusErr(svc, resp.StatusCode, text)
	}
	rep := putReply{locator: strings.TrimSpace(string(text)), replicas: 1}
	if n, ok := keepwire.ParseReplicasStored(resp.Header.Get(keepwire.ReplicasStored)); ok {
		rep.replicas = n
	}
	if v, ok := resp.Header[keepwire.StorageClassesConfirmed]; ok {
		rep.confirmed = keepwire.ParseConfirmed(strings.Join(v, ","))
	}
	return rep, nil
}

// get opens a block on one store; off > 0 asks for the rest from off with
// a Range request. The caller closes the body.
func (u *upstream) get(ctx context.Context, svc Service, loc string, method, token, requestID string, off int64) (*http.Response, error) {
	metering.Touch(ctx, svc.UUID)
	req, err := http.NewRequestWithContext(ctx, method, svc.URL+"/"+loc, nil)
	if err != nil {
		return nil, blockstore.E("upstream.get", blockstore.KindInternal, err)
	}
	u.setCommon(req, token, requestID)
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, upstreamErr(svc, err)
	}
	if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent {
		return resp, nil
	}
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return nil, statusErr(svc, resp.StatusCode, text)
}

func (u *upstream) setCommon(req *http.Request, token, requestID string) {
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if requestID != "" {
		req.Header.Set(keepwire.RequestID, requestID)
	}
	req.Header.Set("Via", "HTTP/1.1 keepproxy")
}

// upstreamErr wraps a transport failure: temporary, kind BadGateway.
func upstreamErr(svc Service, err error) error {
	if errors.Is(err, context.Canceled) {
		return &blockstore.Error{Op: "store " + svc.UUID, Kind: blockstore.KindCanceled, Err: err}
	}
	return &blockstore.Error{Op: "store " + svc.UUID, Kind: blockstore.KindBadGateway, Msg: "keep store unreachable", Err: err}
}

// statusErr turns a store's error reply into an error whose kind follows
// the shared status table and whose message is the store's first line.
func statusErr(svc Service, status int, body []byte) error {
	msg := strings.TrimSpace(string(body))
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &upstreamStatusError{svc: svc.UUID, status: status, msg: msg}
}

type upstreamStatusError struct {
	svc    string
	status int
	msg    string
}

func (e *upstreamStatusError) Error() string {
	return fmt.Sprintf("store %s: HTTP %d %s", e.svc, e.status, e.msg)
}

// Unwrap exposes a kinded error so blockstore.KindOf classifies it.
func (e *upstreamStatusError) Unwrap() error {
	return &blockstore.Error{Kind: blockstore.KindForStatus(e.status), Msg: e.msg}
}

// statusOfUpstream returns the HTTP status a store answered, or 0.
func statusOfUpstream(err error) int {
	for e := err; e != nil; {
		if s, ok := e.(*upstreamStatusError); ok {
			return s.status
		}
		u, ok := e.(interface{ Unwrap() error })
		if !ok {
			return 0
		}
		e = u.Unwrap()
	}
	return 0
}

// temporary reports whether a store failure may succeed on retry (network
// error, 408, 429, 5xx except 507).
func temporary(err error) bool {
	s := statusOfUpstream(err)
	if s == 0 {
		return !blockstore.Is(err, blockstore.KindCanceled)
	}
	return s == 408 || s == 429 || (s >= 500 && s != 507)
}
