package testenv

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// MinIO test credentials (not secrets).
const (
	MinIOAccessKey = "keepgate-e2e"
	MinIOSecretKey = "keepgate-e2e-secret"
)

// MinIO is a MinIO server process on loopback.
type MinIO struct {
	Addr string
	Dir  string
	Proc *Proc
	bin  string
	t    testing.TB
}

// StartMinIO starts MinIO on a free port with a fresh data directory.
// Without the binary (scripts/setup.sh builds it into .cache/bin) the test
// is skipped, or failed under CI=true.
func StartMinIO(t testing.TB) *MinIO {
	t.Helper()
	m := &MinIO{bin: LookPath(t, "minio"), Addr: FreeAddr(t), Dir: t.TempDir(), t: t}
	m.Start()
	return m
}

// Start (re)starts the server on the same address and data.
func (m *MinIO) Start() {
	m.t.Helper()
	m.Proc = Start(m.t, m.bin, []string{"server", "--quiet", "--address", m.Addr, filepath.Join(m.Dir, "data")},
		"MINIO_ROOT_USER="+MinIOAccessKey, "MINIO_ROOT_PASSWORD="+MinIOSecretKey, "MINIO_BROWSER=off", "MINIO_UPDATE=off")
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + m.Addr + "/minio/health/ready"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if m.Proc.Exited() {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.t.Fatalf("MinIO did not become ready:\n%s", m.Proc.Output())
}

// Stop kills the server.
func (m *MinIO) Stop() { m.Proc.Kill() }

// Client returns a minio-go client for the server.
func (m *MinIO) Client() *minio.Client {
	c, err := minio.New(m.Addr, &minio.Options{Creds: credentials.NewStaticV4(MinIOAccessKey, MinIOSecretKey, ""), BucketLookup: minio.BucketLookupPath})
	if err != nil {
		m.t.Fatal(err)
	}
	return c
}

// MakeBucket creates a bucket.
func (m *MinIO) MakeBucket(name string) {
	if err := m.Client().MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		m.t.Fatal(err)
	}
}

// CredentialFiles writes the credentials as mode-0600 files in dir.
func (m *MinIO) CredentialFiles(dir string) (access, secret string) {
	return WriteSecret(m.t, dir, "s3.access", MinIOAccessKey), WriteSecret(m.t, dir, "s3.secret", MinIOSecretKey)
}
