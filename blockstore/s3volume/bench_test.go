package s3volume

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

// BenchmarkMinIO64MiB puts and gets a 64 MiB block through the Volume and,
// for comparison, with minio-go's own PutObject/GetObject against the same
// MinIO server. Skipped without a minio binary.
//
//	go test -run '^$' -bench MinIO64MiB -benchtime 5x ./blockstore/s3volume/
func BenchmarkMinIO64MiB(b *testing.B) {
	srv := sharedMinIO(b)
	bucket := srv.newBucket(b)
	ctx := context.Background()
	v, err := New(ctx, srv.config(bucket))
	if err != nil {
		b.Fatal(err)
	}
	mc := srv.admin(b).Client
	data, h := volumetest.Block(1, blockstore.MaxBlockSize)
	size := int64(len(data))

	b.Run("Volume/Put", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			if err := v.Put(ctx, h, bytes.NewReader(data), size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Volume/Put-signed-payload", func(b *testing.B) {
		v.signPayload = true
		defer func() { v.signPayload = false }()
		b.SetBytes(size)
		for b.Loop() {
			if err := v.Put(ctx, h, bytes.NewReader(data), size); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Volume/Get", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			rc, _, err := v.Get(ctx, h, 0, -1)
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, rc)
			rc.Close()
			if err != nil || n != size {
				b.Fatalf("Get: %d bytes, %v", n, err)
			}
		}
	})
	for _, c := range []struct {
		name string
		opts minio.PutObjectOptions
	}{
		{"minio-go/PutObject-default", minio.PutObjectOptions{}},
		{"minio-go/PutObject-single", minio.PutObjectOptions{DisableMultipart: true}},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if _, err := mc.PutObject(ctx, bucket, "bench-minio-go", bytes.NewReader(data), size, c.opts); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("minio-go/GetObject", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			o, err := mc.GetObject(ctx, bucket, "bench-minio-go", minio.GetObjectOptions{})
			if err != nil {
				b.Fatal(err)
			}
			n, err := io.Copy(io.Discard, o)
			o.Close()
			if err != nil || n != size {
				b.Fatalf("GetObject: %d bytes, %v", n, err)
			}
		}
	})
}
