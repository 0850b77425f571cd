package s3volume

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

const testBucket = "keep-test"

// fakeVolume returns a volume on a fresh fake server.
func fakeVolume(t testing.TB, cfg Config) (*Volume, *fakeS3) {
	t.Helper()
	f := newFakeS3(t, testBucket)
	cfg.Endpoint, cfg.Bucket, cfg.PathStyle = f.addr(), testBucket, true
	if cfg.AccessKey == "" {
		cfg.AccessKey, cfg.SecretKey = testAccessKey, testSecretKey
	}
	v, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	v.backoff = time.Millisecond
	return v, f
}

// TestConformanceFake runs the shared volume suite against the in-process
// fake server, with blocks at the top of the bucket.
func TestConformanceFake(t *testing.T) {
	t.Parallel()
	volumetest.Run(t, func(t *testing.T, p blockstore.TrashPolicy) blockstore.Volume {
		v, _ := fakeVolume(t, Config{Policy: p, Registerer: prometheus.NewRegistry()})
		return v
	}, volumetest.Options{MtimeResolution: time.Second})
}

// TestConformanceMinIO runs the shared volume suite against a real MinIO
// server, with a key prefix. Mandatory under CI=true.
func TestConformanceMinIO(t *testing.T) {
	t.Parallel()
	srv := sharedMinIO(t)
	volumetest.Run(t, func(t *testing.T, p blockstore.TrashPolicy) blockstore.Volume {
		cfg := srv.config(srv.newBucket(t))
		cfg.Prefix, cfg.Policy, cfg.Registerer = "keep", p, prometheus.NewRegistry()
		v, err := New(t.Context(), cfg)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		return v
	}, volumetest.Options{MtimeResolution: time.Second})
}

// TestBadBodiesLeaveNothingMinIO checks, by listing the bucket with a plain
// client, that failed Puts leave no object, marker or incomplete upload,
// and that MinIO itself refuses a body that does not match Content-MD5.
func TestBadBodiesLeaveNothingMinIO(t *testing.T) {
	t.Parallel()
	srv := sharedMinIO(t)
	bucket := srv.newBucket(t)
	v, err := New(t.Context(), srv.config(bucket))
	if err != nil {
		t.Fatal(err)
	}
	data, h := volumetest.Block(21, 5<<20)
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 0x55 // the last chunk is wrong
	cases := []struct {
		name string
		r    func() io.Reader
		size int64
		want blockstore.Kind
	}{
		{"wrong-last-chunk", func() io.Reader { return bytes.NewReader(bad) }, int64(len(bad)), blockstore.KindHashMismatch},
		{"wrong-last-chunk-small-reads", func() io.Reader { return iotest.HalfReader(bytes.NewReader(bad)) }, int64(len(bad)), blockstore.KindHashMismatch},
		{"wrong-last-chunk-unknown-size", func() io.Reader { return bytes.NewReader(bad) }, -1, blockstore.KindHashMismatch},
		{"short", func() io.Reader { return bytes.NewReader(data[:len(data)-1]) }, int64(len(data)), blockstore.KindLengthMismatch},
		{"long", func() io.Reader { return io.MultiReader(bytes.NewReader(data), strings.NewReader("x")) }, int64(len(data)), blockstore.KindLengthMismatch},
		{"failing", func() io.Reader {
			return io.MultiReader(bytes.NewReader(data[:3<<20]), iotest.ErrReader(errors.New("client went away")))
		}, int64(len(data)), blockstore.KindInternal},
	}
	for _, c := range cases {
		err := v.Put(t.Context(), h, c.r(), c.size)
		if !blockstore.Is(err, c.want) {
			t.Errorf("%s: want kind %v, got %v (%v)", c.name, c.want, blockstore.KindOf(err), err)
		}
	}
	// The server's own check: the right length but the wrong bytes, sent
	// with the block's Content-MD5 and no verifying reader in the way.
	_, err = v.core.PutObject(t.Context(), bucket, v.dataKey(h), bytes.NewReader(bad), int64(len(bad)), md5Base64(h), "", v.putOpts())
	if kind, _ := classify(err); kind != blockstore.KindHashMismatch {
		t.Errorf("PUT with a wrong Content-MD5: want BadDigest (hash mismatch), got %v (%v)", kind, err)
	}
	if keys, uploads := srv.allKeys(t, bucket); len(keys) != 0 || len(uploads) != 0 {
		t.Fatalf("failed Puts left objects %q and uploads %q in the bucket", keys, uploads)
	}
	// And a good Put stores exactly the block, its marker and its chunk
	// checksums.
	if err := v.Put(t.Context(), h, bytes.NewReader(data), -1); err != nil {
		t.Fatal(err)
	}
	if keys, _ := srv.allKeys(t, bucket); len(keys) != 3 || keys[0] != h.String() || keys[1] != "recent/"+h.String() || keys[2] != "sums/"+h.String() {
		t.Fatalf("bucket holds %q after one Put", keys)
	}
}

// TestMinIOStopAndRestart checks that a stopped server makes operations
// fail with KindUnavailable after the retries, and that they work again
// once it is back.
func TestMinIOStopAndRestart(t *testing.T) {
	t.Parallel()
	srv := newMinIO(t)
	cfg := srv.config(srv.newBucket(t))
	reg := prometheus.NewRegistry()
	cfg.Retries, cfg.Registerer = 2, reg
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	v.backoff = 5 * time.Millisecond
	data, h := volumetest.Block(31, 100000)
	if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}

	srv.stop()
	start := time.Now()
	_, err1 := v.Stat(t.Context(), h)
	heads := counterValue(v.metrics.errs.WithLabelValues(opHead, "unavailable"))
	_, _, err2 := v.Get(t.Context(), h, 0, -1)
	err3 := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data)))
	err4 := v.Index(t.Context(), "", func(blockstore.BlockInfo) error { return nil })
	err5 := v.Trash(t.Context(), h)
	for i, err := range []error{err1, err2, err3, err4, err5} {
		if !blockstore.Is(err, blockstore.KindUnavailable) {
			t.Errorf("operation %d with MinIO stopped: want Unavailable, got %v (%v)", i+1, blockstore.KindOf(err), err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("failing took %v: retries are not bounded", d)
	}
	if heads != 3 {
		t.Errorf("Stat with 2 retries: %v failed HEAD requests counted, want 3", heads)
	}
	if !strings.Contains(blockstore.Message(err1), cfg.Endpoint) {
		t.Errorf("message does not name the endpoint: %q", blockstore.Message(err1))
	}

	if err := srv.start(); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Stat(t.Context(), h); err != nil {
		t.Fatalf("Stat after restart: %v", err)
	}
	rc, _, err := v.Get(t.Context(), h, 0, -1)
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get after restart: %d bytes, %v", len(got), err)
	}
}

// TestIndexMatchesStatMinIO checks that Index and Stat report the same
// mtimes on a real server (listings carry milliseconds, HEAD seconds): the
// trash list quotes Index's mtime and the node compares it with Stat's.
func TestIndexMatchesStatMinIO(t *testing.T) {
	t.Parallel()
	srv := sharedMinIO(t)
	v, err := New(t.Context(), srv.config(srv.newBucket(t)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		data, h := volumetest.Block(uint64(300+i), 1000)
		if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond) // spread the writes over sub-second times
	}
	n := 0
	err = v.Index(t.Context(), "", func(i blockstore.BlockInfo) error {
		n++
		info, err := v.Stat(t.Context(), i.Hash)
		if err != nil || !info.Mtime.Equal(i.Mtime) || info.Size != i.Size {
			t.Errorf("%s: Index says %v/%d, Stat says %v/%d (%v)", i.Hash, i.Mtime, i.Size, info.Mtime, info.Size, err)
		}
		return nil
	})
	if err != nil || n != 5 {
		t.Fatalf("Index: %d blocks, %v", n, err)
	}
}

// TestNewChecksMinIO checks New's answers for a missing bucket and for
// wrong credentials.
func TestNewChecksMinIO(t *testing.T) {
	t.Parallel()
	srv := sharedMinIO(t)
	_, err := New(t.Context(), srv.config("no-such-bucket"))
	if !blockstore.Is(err, blockstore.KindUnavailable) || !strings.Contains(blockstore.Message(err), "does not exist") {
		t.Errorf("missing bucket: got %v (%q)", err, blockstore.Message(err))
	}
	cfg := srv.config(srv.newBucket(t))
	cfg.SecretKey = "wrong-secret-key"
	_, err = New(t.Context(), cfg)
	if !blockstore.Is(err, blockstore.KindForbidden) {
		t.Errorf("wrong secret key: want Forbidden, got %v", err)
	}
	if strings.Contains(err.Error(), "wrong-secret-key") || strings.Contains(err.Error(), testSecretKey) {
		t.Errorf("error shows the secret key: %v", err)
	}
}

func TestNewConfig(t *testing.T) {
	f := newFakeS3(t, testBucket)
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Bucket: "b"}, "Endpoint is empty"},
		{Config{Endpoint: "http://x:9000", Bucket: "b"}, "without scheme"},
		{Config{Endpoint: "x:9000"}, "Bucket is empty"},
		{Config{Endpoint: "x:9000", Bucket: "b", AccessKey: "a"}, "both AccessKey and SecretKey"},
		{Config{Endpoint: "x:9000", Bucket: "b", Concurrency: -1}, "Concurrency"},
		{Config{Endpoint: "x:9000", Bucket: "b", RaceWindow: -time.Second}, "RaceWindow"},
	} {
		_, err := New(t.Context(), c.cfg)
		if !blockstore.Is(err, blockstore.KindBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want BadRequest mentioning %q, got %v", c.cfg, c.want, err)
		}
	}
	for prefix, want := range map[string]string{"": "", "keep": "keep/", "/keep/": "keep/", "a/b": "a/b/"} {
		v, err := New(t.Context(), Config{Endpoint: f.addr(), Bucket: testBucket, Prefix: prefix, PathStyle: true,
			AccessKey: testAccessKey, SecretKey: testSecretKey})
		if err != nil {
			t.Fatal(err)
		}
		wantID := "s3://" + f.addr() + "/" + testBucket
		if want != "" {
			wantID += "/" + want
		}
		if v.prefix != want || v.DeviceID() != wantID {
			t.Errorf("Prefix %q: got prefix %q, DeviceID %q", prefix, v.prefix, v.DeviceID())
		}
	}
	_, err := New(t.Context(), Config{Endpoint: f.addr(), Bucket: "other", PathStyle: true})
	if !blockstore.Is(err, blockstore.KindUnavailable) || !strings.Contains(err.Error(), `bucket "other" does not exist`) {
		t.Errorf("missing bucket: got %v", err)
	}
}

// TestClassify is the error classification table.
func TestClassify(t *testing.T) {
	resp := func(code string, status int) error { return minio.ErrorResponse{Code: code, StatusCode: status} }
	opErr := func(err error) error {
		return &url.Error{Op: "Put", URL: "http://x/b/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)}}
	}
	for _, c := range []struct {
		err   error
		kind  blockstore.Kind
		retry bool
	}{
		{resp("NoSuchKey", 404), blockstore.KindNotFound, false},
		{resp("", 404), blockstore.KindNotFound, false},
		{resp("NoSuchBucket", 404), blockstore.KindUnavailable, false},
		{resp("AccessDenied", 403), blockstore.KindForbidden, false},
		{resp("InvalidAccessKeyId", 403), blockstore.KindForbidden, false},
		{resp("SignatureDoesNotMatch", 403), blockstore.KindForbidden, false},
		{resp("", 403), blockstore.KindForbidden, false},
		{resp("ExpiredToken", 400), blockstore.KindForbidden, true},
		{resp("AuthorizationHeaderMalformed", 400), blockstore.KindForbidden, false},
		{resp("BadDigest", 400), blockstore.KindHashMismatch, false},
		{resp("InvalidDigest", 400), blockstore.KindHashMismatch, false},
		{resp("InvalidRange", 416), blockstore.KindBadRange, false},
		{resp("EntityTooLarge", 400), blockstore.KindTooLarge, false},
		{resp("XMinioStorageFull", 507), blockstore.KindFull, false},
		{resp("SlowDown", 503), blockstore.KindUnavailable, true},
		{resp("ServiceUnavailable", 503), blockstore.KindUnavailable, true},
		{resp("InternalError", 500), blockstore.KindUnavailable, true},
		{resp("RequestTimeout", 400), blockstore.KindUnavailable, true},
		{resp("503 Service Unavailable", 503), blockstore.KindUnavailable, true},
		{resp("", 502), blockstore.KindUnavailable, true},
		{resp("", 429), blockstore.KindUnavailable, true},
		{resp("RequestTimeTooSkewed", 403), blockstore.KindUnavailable, false},
		{resp("InvalidArgument", 400), blockstore.KindInternal, false},
		{opErr(syscall.ECONNREFUSED), blockstore.KindUnavailable, true},
		{opErr(syscall.ECONNRESET), blockstore.KindUnavailable, true},
		{&url.Error{Op: "Get", URL: "http://x", Err: io.ErrUnexpectedEOF}, blockstore.KindUnavailable, true},
		{&url.Error{Op: "Get", URL: "http://x", Err: timeoutErr{}}, blockstore.KindUnavailable, true},
		{&url.Error{Op: "Get", URL: "http://x", Err: context.DeadlineExceeded}, blockstore.KindUnavailable, true},
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, blockstore.KindUnavailable, false},
		{&net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true}, blockstore.KindUnavailable, true},
		{context.Canceled, blockstore.KindCanceled, false},
		{blockstore.Errorf(blockstore.KindHashMismatch, "bad"), blockstore.KindHashMismatch, false},
		{errors.New("something else"), blockstore.KindInternal, false},
	} {
		kind, retry := classify(c.err)
		if kind != c.kind || retry != c.retry {
			t.Errorf("classify(%#v): got %v/%v, want %v/%v", c.err, kind, retry, c.kind, c.retry)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

// TestRetries checks the retry budget against injected failures.
func TestRetries(t *testing.T) {
	reg := prometheus.NewRegistry()
	v, f := fakeVolume(t, Config{Retries: 3, Registerer: reg})
	data, h := volumetest.Block(41, 1000)
	if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}

	// Throttled twice, then fine: the caller does not notice.
	var n atomic.Int64
	f.setFail(func(r *http.Request) (int, string) {
		if r.Method == http.MethodHead && n.Add(1) <= 2 {
			return http.StatusServiceUnavailable, "SlowDown"
		}
		return 0, ""
	})
	if _, err := v.Stat(t.Context(), h); err != nil {
		t.Fatalf("Stat with two SlowDowns: %v", err)
	}
	if got := counterValue(v.metrics.errs.WithLabelValues(opHead, "unavailable")); got != 2 {
		t.Errorf("errors_total{op=head,kind=unavailable} = %v, want 2", got)
	}

	// Always failing: 1 + Retries attempts, then Unavailable.
	n.Store(0)
	f.setFail(func(r *http.Request) (int, string) {
		n.Add(1)
		return http.StatusInternalServerError, "InternalError"
	})
	if _, err := v.Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindUnavailable) {
		t.Fatalf("Stat against a failing server: want Unavailable, got %v", err)
	}
	if n.Load() != 4 {
		t.Errorf("%d requests for a Stat with 3 retries, want 4", n.Load())
	}

	// Not retried: a refusal.
	n.Store(0)
	f.setFail(func(r *http.Request) (int, string) {
		n.Add(1)
		return http.StatusForbidden, "AccessDenied"
	})
	if err := v.Touch(t.Context(), h); !blockstore.Is(err, blockstore.KindForbidden) || n.Load() != 1 {
		t.Fatalf("Touch refused: want one request and Forbidden, got %d and %v", n.Load(), err)
	}

	// An upload whose body was read cannot be retried: the failure must
	// come back at once, and nothing is stored.
	n.Store(0)
	other, oh := volumetest.Block(42, 3<<20)
	f.setFail(func(r *http.Request) (int, string) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, oh.String()) {
			n.Add(1)
			io.Copy(io.Discard, r.Body) // the body is consumed
			return http.StatusServiceUnavailable, "SlowDown"
		}
		return 0, ""
	})
	if err := v.Put(t.Context(), oh, bytes.NewReader(other), int64(len(other))); !blockstore.Is(err, blockstore.KindUnavailable) {
		t.Fatalf("Put to a throttling server: want Unavailable, got %v", err)
	}
	if n.Load() != 1 {
		t.Errorf("an upload with a consumed body was sent %d times", n.Load())
	}
	f.setFail(nil)
	if _, err := v.Stat(t.Context(), oh); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Errorf("failed upload is visible: %v", err)
	}

	// ctx cancelled during the back-off: the caller's error, at once.
	f.setFail(func(*http.Request) (int, string) { return http.StatusServiceUnavailable, "SlowDown" })
	v.backoff = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.Stat(ctx, h); !blockstore.Is(err, blockstore.KindTimeout) {
		t.Errorf("Stat cancelled during back-off: want Timeout, got %v", err)
	}
}

// TestUnknownSize puts blocks of unknown size (multipart).
func TestUnknownSize(t *testing.T) {
	v, f := fakeVolume(t, Config{})
	for i, n := range []int{0, 1000, unknownSizePart, unknownSizePart + 1, 12 << 20} {
		data, h := volumetest.Block(uint64(50+i), n)
		if err := v.Put(t.Context(), h, bytes.NewReader(data), -1); err != nil {
			t.Fatalf("Put %d bytes of unknown size: %v", n, err)
		}
		rc, info, err := v.Get(t.Context(), h, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, data) || info.Size != int64(n) {
			t.Fatalf("Get %d bytes: %d bytes, %v", n, len(got), err)
		}
	}
	data, h := volumetest.Block(60, 7<<20)
	data[len(data)-1] ^= 1
	before := len(f.keys())
	if err := v.Put(t.Context(), h, bytes.NewReader(data), -1); !blockstore.Is(err, blockstore.KindHashMismatch) {
		t.Fatalf("bad body of unknown size: want HashMismatch, got %v", err)
	}
	if after := len(f.keys()); after != before || len(f.uploads) != 0 {
		t.Fatalf("bad body of unknown size left %d objects and %d uploads", after-before, len(f.uploads))
	}
}

// TestGetVerifies checks that a damaged object is refused on a full read,
// before its last chunk, and served unverified on a range read.
func TestGetVerifies(t *testing.T) {
	v, f := fakeVolume(t, Config{})
	data, h := volumetest.Block(70, 1<<20)
	bad := bytes.Clone(data)
	bad[len(bad)-10] ^= 1
	f.put(v.dataKey(h), bad, time.Now())
	rc, info, err := v.Get(t.Context(), h, 0, -1)
	if err != nil || info.Size != int64(len(data)) {
		t.Fatalf("Get: %+v %v", info, err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if !blockstore.Is(err, blockstore.KindCorrupt) {
		t.Fatalf("reading a damaged block: want Corrupt, got %v", err)
	}
	if len(got) == len(data) {
		t.Fatal("the last chunk of a damaged block was delivered")
	}
	rc, _, err = v.Get(t.Context(), h, 1000, 100)
	if err != nil {
		t.Fatal(err)
	}
	got, err = io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, bad[1000:1100]) {
		t.Fatalf("range read: %d bytes, %v", len(got), err)
	}
	// A range covering the whole block is a full read, verified.
	rc, _, err = v.Get(t.Context(), h, 0, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if !blockstore.Is(err, blockstore.KindCorrupt) {
		t.Fatalf("reading a damaged block with a full range: want Corrupt, got %v", err)
	}
	// Short and long objects are corrupt too.
	for _, b := range [][]byte{data[:len(data)-1], append(bytes.Clone(data), 0)} {
		f.put(v.dataKey(h), b, time.Now())
		rc, _, err := v.Get(t.Context(), h, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		if !blockstore.Is(err, blockstore.KindCorrupt) {
			t.Fatalf("reading a %d-byte object for a %d-byte block: want Corrupt, got %v", len(b), len(data), err)
		}
	}
}

// TestIndexMerge checks paging, the merge-join with markers, and that
// keys that are not blocks are skipped.
func TestIndexMerge(t *testing.T) {
	v, f := fakeVolume(t, Config{Prefix: "keep/"})
	v.pageSize = 3
	old := time.Date(2020, 1, 2, 3, 4, 5, 600e6, time.UTC)
	want := map[blockstore.Hash]time.Time{}
	for i := 0; i < 20; i++ {
		data, h := volumetest.Block(uint64(80+i), 10+i)
		f.put(v.dataKey(h), data, old)
		if i%3 != 0 { // every third block has no marker
			f.put(v.markerKey(h), nil, old.Add(time.Duration(i)*time.Hour))
			want[h] = old.Add(time.Duration(i) * time.Hour).Truncate(time.Second)
		} else {
			want[h] = old.Truncate(time.Second)
		}
	}
	_, gone := volumetest.Block(200, 10)
	f.put(v.markerKey(gone), nil, old)               // a marker without data (trashed)
	f.put(v.trashKey(gone), []byte("x"), old)        // and its trash
	f.put("keep/"+strings.Repeat("A", 32), nil, old) // not a hash
	f.put("keep/0123", nil, old)
	f.put("keep/recent/junk", nil, old)
	f.put("other/"+gone.String(), nil, old) // outside the prefix
	f.put(gone.String(), nil, old)

	got := map[blockstore.Hash]time.Time{}
	var last string
	err := v.Index(t.Context(), "", func(i blockstore.BlockInfo) error {
		if i.Hash.String() <= last {
			t.Errorf("index out of order: %s after %s", i.Hash, last)
		}
		last = i.Hash.String()
		got[i.Hash] = i.Mtime
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("Index listed %d blocks, want %d", len(got), len(want))
	}
	for h, m := range want {
		if !got[h].Equal(m) {
			t.Errorf("%s: mtime %v, want %v", h, got[h], m)
		}
		info, err := v.Stat(t.Context(), h)
		if err != nil || !info.Mtime.Equal(got[h]) {
			t.Errorf("%s: Stat mtime %v (%v) differs from Index mtime %v", h, info.Mtime, err, got[h])
		}
	}
	if err := v.Index(t.Context(), "g", func(blockstore.BlockInfo) error { return nil }); !blockstore.Is(err, blockstore.KindBadRequest) {
		t.Errorf("Index with a bad prefix: %v", err)
	}
}

// TestEmptyTrashRaces checks EmptyTrash's handling of trash that raced
// with writes.
func TestEmptyTrashRaces(t *testing.T) {
	v, f := fakeVolume(t, Config{Policy: blockstore.TrashPolicy{MinAge: time.Hour, Lifetime: 24 * time.Hour}})
	now := time.Now()
	put := func(seed uint64) ([]byte, blockstore.Hash) {
		data, h := volumetest.Block(seed, 100)
		return data, h
	}
	// Trashed 30 minutes after a write: a race; no data object: restore.
	d1, h1 := put(1)
	f.put(v.trashKey(h1), d1, now.Add(-2*time.Hour))
	f.put(v.markerKey(h1), nil, now.Add(-150*time.Minute))
	// Re-written after being trashed: keep the data, drop the trash.
	d2, h2 := put(2)
	f.put(v.trashKey(h2), d2, now.Add(-2*time.Hour))
	f.put(v.markerKey(h2), nil, now.Add(-time.Hour))
	f.put(v.dataKey(h2), d2, now.Add(-time.Hour))
	// Properly trashed, not expired: kept.
	d3, h3 := put(3)
	f.put(v.trashKey(h3), d3, now.Add(-2*time.Hour))
	f.put(v.markerKey(h3), nil, now.Add(-48*time.Hour))
	// Properly trashed and expired: deleted, with its marker.
	d4, h4 := put(4)
	f.put(v.trashKey(h4), d4, now.Add(-25*time.Hour))
	f.put(v.markerKey(h4), nil, now.Add(-48*time.Hour))

	if err := v.EmptyTrash(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := []string{v.dataKey(h1), v.dataKey(h2), v.markerKey(h1), v.markerKey(h2), v.markerKey(h3), v.trashKey(h3)}
	have := map[string]bool{}
	for _, k := range f.keys() {
		have[k] = true
	}
	for _, k := range want {
		if !have[k] {
			t.Errorf("missing %s after EmptyTrash", k)
		}
		delete(have, k)
	}
	if len(have) > 0 {
		t.Errorf("left after EmptyTrash: %v", have)
	}
}

// TestTrashChecks covers MinAge, Lifetime 0 and the race window.
func TestTrashChecks(t *testing.T) {
	v, f := fakeVolume(t, Config{Policy: blockstore.TrashPolicy{MinAge: time.Hour, Lifetime: 48 * time.Hour}})
	data, h := volumetest.Block(90, 100)
	f.put(v.dataKey(h), data, time.Now().Add(-2*time.Hour))
	f.put(v.markerKey(h), nil, time.Now().Add(-30*time.Minute))
	if err := v.Trash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Stat(t.Context(), h); err != nil {
		t.Fatalf("a block touched 30 minutes ago was trashed: %v", err)
	}
	f.put(v.markerKey(h), nil, time.Now().Add(-2*time.Hour))
	// A trash copy due for deletion within the race window (24h): refuse.
	f.put(v.trashKey(h), data, time.Now().Add(-30*time.Hour))
	if err := v.Trash(t.Context(), h); !blockstore.Is(err, blockstore.KindUnavailable) {
		t.Fatalf("Trash over a trash copy about to expire: want Unavailable, got %v", err)
	}
	f.put(v.trashKey(h), data, time.Now().Add(-time.Hour)) // expires in 47h: fine
	if err := v.Trash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Stat(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("trashed block still there: %v", err)
	}
	if err := v.Untrash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if err := v.Untrash(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("second Untrash: want NotFound, got %v", err)
	}

	// Lifetime 0: delete at once, marker included.
	v0, f0 := fakeVolume(t, Config{Policy: blockstore.TrashPolicy{}})
	if err := v0.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if err := v0.Trash(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	if keys := f0.keys(); len(keys) != 0 {
		t.Fatalf("Trash with lifetime 0 left %q", keys)
	}
	if err := v0.Untrash(t.Context(), h); !blockstore.Is(err, blockstore.KindNotFound) {
		t.Fatalf("Untrash after delete: want NotFound, got %v", err)
	}
}

// TestConcurrencyLimit checks that no more than Concurrency requests are
// in flight, a Get's open body included.
func TestConcurrencyLimit(t *testing.T) {
	v, f := fakeVolume(t, Config{Concurrency: 2})
	data, h := volumetest.Block(95, 100)
	if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	var inFlight, peak atomic.Int64
	f.setFail(func(*http.Request) (int, string) {
		n := inFlight.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		return 0, ""
	})
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := v.Stat(t.Context(), h); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak of %d concurrent requests with Concurrency 2", p)
	}
	f.setFail(nil)
	// Two open Get bodies take both slots: a third request waits.
	rc1, _, err := v.Get(t.Context(), h, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	rc2, _, err := v.Get(t.Context(), h, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if _, err := v.Stat(ctx, h); !blockstore.Is(err, blockstore.KindTimeout) {
		t.Errorf("Stat with every slot held by Get bodies: want Timeout, got %v", err)
	}
	rc1.Close()
	rc1.Close()
	if _, err := v.Stat(t.Context(), h); err != nil {
		t.Errorf("Stat after a Get body was closed: %v", err)
	}
	rc2.Close()
}

// TestMetrics checks the collectors' names and labels, and that two
// volumes share one Registerer.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	v1, _ := fakeVolume(t, Config{Registerer: reg})
	v2, _ := fakeVolume(t, Config{Registerer: reg, Prefix: "x"})
	data, h := volumetest.Block(99, 1000)
	for _, v := range []*Volume{v1, v2} {
		if err := v.Put(t.Context(), h, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		rc, _, err := v.Get(t.Context(), h, 0, -1)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, rc)
		rc.Close()
		_, missing := volumetest.Block(98, 10)
		v.Stat(t.Context(), missing)
	}
	if v1.DeviceID() == v2.DeviceID() {
		t.Fatal("two volumes with one DeviceID")
	}
	for _, v := range []*Volume{v1, v2} {
		id := v.DeviceID()
		checks := map[string]float64{
			`keepstore_s3_ops_total{op="put",volume="` + id + `"}`:                      1,
			`keepstore_s3_ops_total{op="put_marker",volume="` + id + `"}`:               1,
			`keepstore_s3_errors_total{kind="not-found",op="head",volume="` + id + `"}`: 1,
			`keepstore_s3_bytes_total{direction="out",volume="` + id + `"}`:             1000,
			`keepstore_s3_bytes_total{direction="in",volume="` + id + `"}`:              1000,
			`keepstore_s3_op_seconds_count{op="get",volume="` + id + `"}`:               1,
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		values := flatten(mfs)
		for k, want := range checks {
			if values[k] != want {
				t.Errorf("%s = %v, want %v", k, values[k], want)
			}
		}
	}
}

// TestPutCancelDoesNotTouchReaderAfterReturn checks that Put does not
// return while the HTTP client may still read the caller's reader.
func TestPutCancelDoesNotTouchReaderAfterReturn(t *testing.T) {
	v, f := fakeVolume(t, Config{})
	data, h := volumetest.Block(97, 1<<20)
	f.setFail(func(r *http.Request) (int, string) {
		if r.Method == http.MethodPut {
			return http.StatusServiceUnavailable, "SlowDown" // answer before reading the body
		}
		return 0, ""
	})
	for i := 0; i < 10; i++ {
		r := &watchedReader{r: bytes.NewReader(data)}
		err := v.Put(t.Context(), h, r, int64(len(data)))
		if err == nil {
			t.Fatal("Put succeeded against a failing server")
		}
		r.returned.Store(true)
		time.Sleep(time.Millisecond)
		if r.late.Load() {
			t.Fatal("the caller's reader was read after Put returned")
		}
	}
}

type watchedReader struct {
	r        io.Reader
	returned atomic.Bool
	late     atomic.Bool
}

func (w *watchedReader) Read(p []byte) (int, error) {
	if w.returned.Load() {
		w.late.Store(true)
	}
	return w.r.Read(p)
}

// TestEmptyBlock covers the zero-length block and its wrong hash.
func TestEmptyBlock(t *testing.T) {
	v, f := fakeVolume(t, Config{})
	if err := v.Put(t.Context(), blockstore.EmptyHash, strings.NewReader(""), 0); err != nil {
		t.Fatal(err)
	}
	_, h := volumetest.Block(3, 10)
	if err := v.Put(t.Context(), h, strings.NewReader(""), 0); !blockstore.Is(err, blockstore.KindHashMismatch) {
		t.Fatalf("empty body for a non-empty hash: %v", err)
	}
	if keys := f.keys(); len(keys) != 2 {
		t.Fatalf("keys %q", keys)
	}
	if _, _, err := v.Get(t.Context(), blockstore.EmptyHash, 0, 5); err != nil {
		t.Fatalf("range of an empty block: %v", err)
	}
}

// flatten maps `name{label="value",...}` (labels sorted by name, as
// Gather returns them) to the value of each counter and histogram count.
func flatten(mfs []*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.GetCounter() != nil:
				out[mf.GetName()+key] = m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				out[mf.GetName()+"_count"+key] = float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return out
}

// counterValue is the current value of c.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}
