package nodehttp

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/node"
)

const (
	testKey   = "examplesigningkey0123456789abcdefghijklmnopqrstuvwxyz"
	userToken = "mytokenABC"
	adminTok  = "admin-secret-token"
	mgmtTok   = "management-secret-token"
)

// faultVolume wraps a volume with injectable failures.
type faultVolume struct {
	blockstore.Volume
	mu     sync.Mutex
	faults faults
	puts   int
}

func (f *faultVolume) Put(ctx context.Context, h blockstore.Hash, r io.Reader, size int64) error {
	f.mu.Lock()
	f.puts++
	putErr, after, slow := f.faults.putErr, f.faults.putFailAfter, f.faults.slowCommit
	f.mu.Unlock()
	if slow > 0 {
		r = slowEnd{r, slow}
	}
	if putErr != nil {
		return putErr
	}
	if after > 0 {
		io.CopyN(io.Discard, r, after)
		return blockstore.E("fault.Put", blockstore.KindUnavailable, "disk on fire")
	}
	return f.Volume.Put(ctx, h, r, size)
}

func (f *faultVolume) Get(ctx context.Context, h blockstore.Hash, off, n int64) (io.ReadCloser, blockstore.BlockInfo, error) {
	c := f.snapshot()
	if c.getErr != nil {
		return nil, blockstore.BlockInfo{}, c.getErr
	}
	rc, info, err := f.Volume.Get(ctx, h, off, n)
	if err != nil || c.getFailAfter <= 0 {
		return rc, info, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.MultiReader(io.LimitReader(rc, c.getFailAfter), errReader{}), rc}, info, nil
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) {
	return 0, blockstore.E("fault.Get", blockstore.KindUnavailable, "disk fell off mid-read")
}

func (f *faultVolume) Stat(ctx context.Context, h blockstore.Hash) (blockstore.BlockInfo, error) {
	if err := f.snapshot().statErr; err != nil {
		return blockstore.BlockInfo{}, err
	}
	return f.Volume.Stat(ctx, h)
}

func (f *faultVolume) Index(ctx context.Context, prefix string, fn func(blockstore.BlockInfo) error) error {
	after := f.snapshot().indexFailAfter
	if after <= 0 {
		return f.Volume.Index(ctx, prefix, fn)
	}
	k := 0
	return f.Volume.Index(ctx, prefix, func(bi blockstore.BlockInfo) error {
		if k == after {
			return blockstore.E("fault.Index", blockstore.KindUnavailable, "listing failed")
		}
		k++
		return fn(bi)
	})
}

// faults are the injectable failures of a faultVolume.
type faults struct {
	putErr         error // Put fails with it before reading the body
	putFailAfter   int64 // > 0: Put reads this much of the body, then fails (Unavailable)
	getErr         error // Get fails with it
	getFailAfter   int64 // > 0: the Get reader fails after this many bytes
	statErr        error
	indexFailAfter int           // > 0: Index fails after this many entries
	slowCommit     time.Duration // Put waits this long after the body's end
}

// slowEnd delays the report of the end of r.
type slowEnd struct {
	r io.Reader
	d time.Duration
}

func (s slowEnd) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err == io.EOF {
		time.Sleep(s.d)
	}
	return n, err
}

func (f *faultVolume) set(c faults) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults = c
}

func (f *faultVolume) snapshot() faults {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.faults
}

func (f *faultVolume) putCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts
}

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type env struct {
	t    *testing.T
	n    *node.Node
	h    http.Handler // New(n, http), served by srv
	http Options
	srv  *httptest.Server
	reg  *prometheus.Registry
	logs *syncBuffer
}

// mountSpec describes a test mount; its volume is a faultVolume over a
// memvolume.
type mountSpec struct {
	uuid     string
	classes  []string
	readOnly bool
	repl     int
	prio     int
}

func memMount(spec mountSpec) (node.Mount, *faultVolume, *memvolume.Volume) {
	mv := memvolume.New(blockstore.TrashPolicy{MinAge: 0, Lifetime: time.Hour})
	fv := &faultVolume{Volume: mv}
	return node.Mount{UUID: spec.uuid, Volume: fv, ReadOnly: spec.readOnly, Replication: spec.repl, Classes: spec.classes, Priority: spec.prio}, fv, mv
}

// withWriteToken is o with WriteToken w.
func withWriteToken(o Options, w string) Options {
	o.WriteToken = w
	return o
}

// envOptions are a test node's options and its HTTP API's.
type envOptions struct {
	node.Options
	HTTP Options
}

// newEnv starts a node over mounts, its handler on an httptest server, with signing,
// admin and management tokens, and its background work running.
func newEnv(t *testing.T, mounts []node.Mount, mods ...func(*envOptions)) *env {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	opt := envOptions{Options: node.Options{
		Mounts:             mounts,
		Signer:             &blockstore.Signer{Key: []byte(testKey), TTL: 336 * time.Hour},
		RequireSignatures:  true,
		SignatureTTL:       336 * time.Hour,
		TrashEnabled:       true,
		TrashCheckInterval: time.Hour,
		BudgetWait:         200 * time.Millisecond,
		Logger:             slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry:           reg,
		Version:            "test",
	}, HTTP: Options{AdminToken: adminTok, ManagementToken: mgmtTok, BodyIdleTimeout: 5 * time.Second}}
	for _, m := range mods {
		m(&opt)
	}
	n, err := node.New(opt.Options)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	h := New(n, opt.HTTP)
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		<-done
	})
	return &env{t: t, n: n, h: h, http: opt.HTTP, srv: srv, reg: reg, logs: logs}
}

type resp struct {
	Code   int
	Header http.Header
	Body   string
	Err    error // error reading the body
}

// do sends a request; hdr is a list of "Name: value" strings.
func (e *env) do(method, path string, body io.Reader, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, h := range hdr {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	if b, ok := body.(*bytes.Reader); ok {
		req.ContentLength = int64(b.Len())
	}
	res, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, rerr := io.ReadAll(res.Body)
	return resp{Code: res.StatusCode, Header: res.Header, Body: string(b), Err: rerr}
}

func (e *env) expect(r resp, code int, bodyPrefix string) {
	e.t.Helper()
	if r.Code != code || !strings.HasPrefix(r.Body, bodyPrefix) {
		e.t.Fatalf("got %d %q, want %d %q…", r.Code, r.Body, code, bodyPrefix)
	}
}

// put stores data with the user token and returns the signed locator.
func (e *env) put(data []byte, hdr ...string) string {
	e.t.Helper()
	r := e.do("PUT", "/"+blockstore.HashOf(data).String(), bytes.NewReader(data), append(hdr, "Authorization: Bearer "+userToken)...)
	if r.Code != 200 {
		e.t.Fatalf("PUT: %d %s\n%s", r.Code, r.Body, e.logs.String())
	}
	return strings.TrimSuffix(r.Body, "\n")
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

// metric returns the text exposition lines of the registry containing s.
func (e *env) metric(s string) string {
	e.t.Helper()
	r := e.do("GET", "/metrics", nil, bearer(mgmtTok))
	var out []string
	for _, l := range strings.Split(r.Body, "\n") {
		if strings.Contains(l, s) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// waitBudgetInUse waits until some request holds memory budget.
func (e *env) waitBudgetInUse() {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.n.Status().MemoryBudget.InUse == 0 {
		if time.Now().After(deadline) {
			e.t.Fatal("no request took memory budget")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
