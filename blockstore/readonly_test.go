package blockstore_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/memvolume"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

type verifying struct{ blockstore.Volume }

func (verifying) VerifiesFullReads() bool { return true }

// The read-only wrapper refuses every write with KindReadOnly, passes reads
// through unchanged, and hides none of the wrapped volume's optional
// interfaces (As walks Unwrap).
func TestReadOnlyWrapper(t *testing.T) {
	ctx := context.Background()
	mem := memvolume.New(blockstore.TrashPolicy{})
	data, h := volumetest.Block(3, 5000)
	if err := mem.Put(ctx, h, strings.NewReader(string(data)), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	ro := blockstore.ReadOnly(verifying{mem})
	for name, err := range map[string]error{
		"Put":          ro.Put(ctx, h, strings.NewReader(string(data)), int64(len(data))),
		"Touch":        ro.Touch(ctx, h),
		"Trash":        ro.Trash(ctx, h),
		"Untrash":      ro.Untrash(ctx, h),
		"SetChecksums": ro.SetChecksums(ctx, h, nil),
	} {
		if !blockstore.Is(err, blockstore.KindReadOnly) {
			t.Errorf("%s: %v, want KindReadOnly", name, err)
		}
	}
	rc, info, err := ro.Get(ctx, h, 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if string(got) != string(data) || info.Size != 5000 {
		t.Fatalf("Get through the wrapper: %d bytes, size %d", len(got), info.Size)
	}
	n := 0
	ro.Index(ctx, "", func(blockstore.BlockInfo) error { n++; return nil })
	if _, err := ro.Stat(ctx, h); err != nil || n != 1 {
		t.Fatalf("Stat %v, Index %d", err, n)
	}
	if rv, ok := blockstore.As[blockstore.ReadVerifier](ro); !ok || !rv.VerifiesFullReads() {
		t.Fatal("the read-only wrapper hides the wrapped volume's ReadVerifier")
	}
	if _, ok := blockstore.As[blockstore.ReadVerifier](mem); ok {
		t.Fatal("As found an interface the volume does not implement")
	}
}
