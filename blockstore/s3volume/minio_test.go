package s3volume

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/keepgate/keepgate/internal/testenv"
)

// Credentials of the test servers (not secrets).
const (
	testAccessKey = "keepgatetest"
	testSecretKey = "keepgate-test-secret"
)

// minioServer is a MinIO process on loopback.
type minioServer struct {
	bin  string
	addr string
	dir  string // holds data/ and minio.log

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// shared is the MinIO server of this test binary, started by the first
// test that needs it and killed by TestMain.
var shared struct {
	once sync.Once
	srv  *minioServer
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if s := shared.srv; s != nil {
		s.stop()
		os.RemoveAll(s.dir)
	}
	os.Exit(code)
}

// sharedMinIO returns the binary's MinIO server, starting it on first use.
// Without a minio binary the test is skipped (failed under CI=true).
func sharedMinIO(t testing.TB) *minioServer {
	t.Helper()
	bin := testenv.LookPath(t, "minio")
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "s3volume-minio-*")
		if err != nil {
			shared.err = err
			return
		}
		shared.srv = &minioServer{bin: bin, addr: testenv.FreeAddr(t), dir: dir}
		shared.err = shared.srv.start()
	})
	if shared.err != nil {
		t.Fatalf("starting MinIO: %v", shared.err)
	}
	return shared.srv
}

// newMinIO starts a MinIO server of the test's own, killed at cleanup.
func newMinIO(t *testing.T) *minioServer {
	t.Helper()
	s := &minioServer{bin: testenv.LookPath(t, "minio"), addr: testenv.FreeAddr(t), dir: t.TempDir()}
	t.Cleanup(s.stop)
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	return s
}

// start runs the server on s.addr and s.dir and waits until it is ready.
func (s *minioServer) start() error {
	logf, err := os.OpenFile(filepath.Join(s.dir, "minio.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, "server", "--quiet", "--address", s.addr, filepath.Join(s.dir, "data"))
	cmd.Env = append(os.Environ(), "MINIO_ROOT_USER="+testAccessKey, "MINIO_ROOT_PASSWORD="+testSecretKey,
		"MINIO_BROWSER=off", "MINIO_UPDATE=off")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		select {
		case <-done:
			return fmt.Errorf("minio exited early:\n%s", s.log())
		default:
		}
		resp, err := client.Get("http://" + s.addr + "/minio/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
	s.stop()
	return fmt.Errorf("minio not ready on %s after 30s:\n%s", s.addr, s.log())
}

// stop kills the server (its process group) and waits for it.
func (s *minioServer) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
}

func (s *minioServer) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "minio.log"))
	return string(b)
}

// admin is a plain minio-go client of the server, for test setup and
// for looking at the bucket behind the volume's back.
func (s *minioServer) admin(t testing.TB) *minio.Core {
	t.Helper()
	c, err := minio.NewCore(s.addr, &minio.Options{
		Creds: credentials.NewStaticV4(testAccessKey, testSecretKey, ""), Region: DefaultRegion, BucketLookup: minio.BucketLookupPath})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var bucketSeq atomic.Int64

// newBucket creates a fresh bucket.
func (s *minioServer) newBucket(t testing.TB) string {
	t.Helper()
	name := fmt.Sprintf("vt-%d-%d", os.Getpid(), bucketSeq.Add(1))
	if err := s.admin(t).MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: DefaultRegion}); err != nil {
		t.Fatalf("MakeBucket %s: %v", name, err)
	}
	return name
}

// config is a volume config for bucket on s.
func (s *minioServer) config(bucket string) Config {
	return Config{Endpoint: s.addr, Bucket: bucket, AccessKey: testAccessKey, SecretKey: testSecretKey, PathStyle: true}
}

// allKeys lists every object in bucket, and every incomplete multipart
// upload, with a plain minio-go client.
func (s *minioServer) allKeys(t testing.TB, bucket string) (keys, uploads []string) {
	t.Helper()
	c := s.admin(t)
	for o := range c.ListObjectsIter(context.Background(), bucket, minio.ListObjectsOptions{Recursive: true}) {
		if o.Err != nil {
			t.Fatalf("listing %s: %v", bucket, o.Err)
		}
		keys = append(keys, o.Key)
	}
	for u := range c.ListIncompleteUploads(context.Background(), bucket, "", true) {
		if u.Err != nil {
			t.Fatalf("listing uploads of %s: %v", bucket, u.Err)
		}
		uploads = append(uploads, u.Key)
	}
	return keys, uploads
}
