package blockstore

import (
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// Chunk size by measurement (see ChunkSize):
//
//	go test -run '^$' -bench 'CRC32C|ChunkRead' -benchtime 20x ./blockstore/
//
// BenchmarkCRC32C is the checksum alone over a 64 MiB block in chunks of
// each size; BenchmarkChunkRead is a keepstore GET's inner loop: read a
// chunk of a 64 MiB file (in the page cache), check its CRC32C, write it
// to a loopback TCP connection whose other end discards it.
var benchChunkSizes = []int{16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20}

func BenchmarkCRC32C(b *testing.B) {
	data := make([]byte, MaxBlockSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	tab := crc32.MakeTable(crc32.Castagnoli)
	for _, cs := range benchChunkSizes {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				for off := 0; off < len(data); off += cs {
					crc32.Checksum(data[off:off+cs], tab)
				}
			}
		})
	}
}

func BenchmarkChunkRead(b *testing.B) {
	path := filepath.Join(b.TempDir(), "block")
	data := make([]byte, MaxBlockSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	tab := crc32.MakeTable(crc32.Castagnoli)
	for _, cs := range benchChunkSizes {
		b.Run(fmt.Sprintf("chunk=%dKiB", cs>>10), func(b *testing.B) {
			buf := make([]byte, cs)
			b.SetBytes(MaxBlockSize)
			for b.Loop() {
				f, err := os.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				for {
					n, err := io.ReadFull(f, buf)
					if n > 0 {
						crc32.Checksum(buf[:n], tab)
						if _, err := conn.Write(buf[:n]); err != nil {
							b.Fatal(err)
						}
					}
					if err != nil {
						break
					}
				}
				f.Close()
			}
		})
	}
}
