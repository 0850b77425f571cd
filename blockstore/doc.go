// Package blockstore is the core of keepgate: block hashes and locators,
// permission signatures, rendezvous probe order, verifying readers and
// writers, chunk checksums (checksum.go: CRC32C per ChunkSize; PutReader
// verifies what a Volume stores, ChunkReader checks what is read, chunk by
// chunk, before handing it out), error kinds with their single HTTP
// status table, and the Volume and Store interfaces that every backend and
// service implements.
//
// It has no HTTP server code and no configuration library: the edges
// (blockstore/node, gateway, cmd/...) parse requests into these types once
// and call into it.
package blockstore

// MaxBlockSize is the largest block Keep stores: 64 MiB.
const MaxBlockSize = 64 << 20
