package gatewayapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// countingPacer records what was asked of it.
type countingPacer struct {
	max   int
	waits []int
	err   error
}

func (c *countingPacer) Max() int { return c.max }
func (c *countingPacer) Wait(_ context.Context, n int) error {
	c.waits = append(c.waits, n)
	return c.err
}

func TestPacedStreams(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10000) // 100,000 bytes
	p := &countingPacer{max: 4096}
	var got bytes.Buffer
	if _, err := io.CopyBuffer(&got, pacedBody(context.Background(), iotest.HalfReader(bytes.NewReader(data)), p), make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	paid := 0
	for _, n := range p.waits {
		if n > p.max {
			t.Fatalf("a read of %d paid at once, over the burst %d", n, p.max)
		}
		paid += n
	}
	if !bytes.Equal(got.Bytes(), data) || paid != len(data) {
		t.Fatalf("read %d bytes, paid %d, want %d", got.Len(), paid, len(data))
	}

	w := &countingPacer{max: 1000}
	got.Reset()
	n, err := pacedOutput(context.Background(), &got, w).Write(data)
	if err != nil || n != len(data) || !bytes.Equal(got.Bytes(), data) || len(w.waits) != 100 {
		t.Fatalf("paced write: %d %v, %d waits", n, err, len(w.waits))
	}
	// A refused wait stops the stream.
	stop := &countingPacer{max: 1000, err: context.Canceled}
	if n, err := pacedOutput(context.Background(), io.Discard, stop).Write(data); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled write: %d %v", n, err)
	}
	if r := pacedBody(context.Background(), bytes.NewReader(data), nil); r == nil {
		t.Fatal("no pacer: nil reader")
	}
}
