package fanout

import (
	"bytes"
	"crypto/md5"
	"io"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/volumetest"
)

func TestTeeWindowBoundsMemory(t *testing.T) {
	data, h := volumetest.Block(12, 8<<20)
	tee := NewTee(h, int64(len(data)), 1<<20, true)
	fast, slow := tee.NewReader(), tee.NewReader()
	done := make(chan error, 1)
	go func() { done <- tee.Pump(bytes.NewReader(data)) }()
	var fastGot bytes.Buffer
	fastDone := make(chan struct{})
	go func() { io.Copy(&fastGot, fast); fast.Close(); close(fastDone) }()
	time.Sleep(100 * time.Millisecond)
	tee.mu.Lock()
	held := int64(len(tee.chunks)) * ChunkSize
	tee.mu.Unlock()
	if held > (1<<20)+2*ChunkSize {
		t.Fatalf("tee holds %d bytes with a stalled reader; window is 1 MiB", held)
	}
	var slowGot bytes.Buffer
	io.Copy(&slowGot, slow)
	slow.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(slowGot.Bytes(), data) {
		t.Fatal("slow reader got wrong data")
	}
	<-fastDone
	if !bytes.Equal(fastGot.Bytes(), data) {
		t.Fatal("fast reader got wrong data")
	}
}

func TestTeeWithholdsFinalChunkOnMismatch(t *testing.T) {
	data, _ := volumetest.Block(13, 3<<20)
	h := blockstore.Hash(md5.Sum(append([]byte("x"), data...)))
	tee := NewTee(h, int64(len(data)), 8<<20, true)
	r := tee.NewReader()
	go tee.Pump(bytes.NewReader(data))
	got, err := io.ReadAll(r)
	if err == nil || len(got) >= len(data) {
		t.Fatalf("reader got %d of %d bytes, err %v", len(got), len(data), err)
	}
}
