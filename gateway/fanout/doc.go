// Package fanout is the buffer between one PUT body and the stores it
// goes to: a Tee hands the body to several readers at once (one per
// store) in a bounded window of fixed-size chunks, lets a reader that
// joins while offset 0 is still held start over, hashes MD5 once (on
// lanes of minio's md5-simd while other uploads hash too) and computes the
// chunk checksums in the same pass, and withholds the final chunk until
// the body ended at its size and, when it verifies, matched its hash.
// Package gateway's Put drives it.
package fanout
