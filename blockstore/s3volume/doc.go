// Package s3volume is a blockstore.Volume in a bucket of any S3-compatible
// object store (AWS S3, MinIO, Ceph RGW), through minio-go. Its layout is
// Arvados' S3 volume layout (KEEP-PROTOCOL.md §9.3) with PrefixLength 0, so
// a volume without a Prefix can serve a bucket written by Arvados'
// keepstore and the other way round.
//
// # Key layout
//
// With P the configured Prefix ("" or ending in "/") and H a block's 32-hex
// MD5:
//
//	P + H              the block's bytes, exactly, with no metadata we depend on
//	P + "recent/" + H  a zero-length marker rewritten by every Put, Touch and
//	                   Untrash: its LastModified is the block's mtime
//	P + "trash/" + H   a server-side copy of a trashed block; its
//	                   LastModified is the time it was trashed
//
// Why a marker: S3 cannot change an object's LastModified without
// rewriting it, and rewriting a 64 MiB block to touch it is too costly. A
// zero-length PUT is cheap. Stat and Index report the marker's time, or the
// data object's LastModified when a block has no marker (data written by
// other tools); mtimes are whole seconds, because HEAD answers carry whole
// seconds and Index (listing, milliseconds) must agree with Stat. Get's
// BlockInfo.Mtime is the data object's LastModified, to save a request.
//
// Index lists P+prefix page by page (ListObjectsV2, 1000 keys per request)
// and merge-joins it with the listing of P+"recent/"+prefix, both in key
// order. "recent/" and "trash/" sort after every hex digit, so the data
// listing stops at the first key past "f" without paging through them.
//
// # Writes: nothing unverified is ever stored
//
// Put sends the block as one PUT (never multipart) with Content-Length set
// to the block size and Content-MD5 set to the block's hash — which is its
// MD5 — and the body streamed through blockstore.NewVerifyingReader; no
// buffer holds the block. Two independent checks keep a bad body out:
//   - the verifying reader withholds the final chunk unless the bytes hash
//     to H and end exactly at the size, so the server never receives a
//     complete body and the request fails (a short, long, wrong or failing
//     body, or a cancelled context, aborts the upload);
//   - the server itself compares the body with Content-MD5 and refuses to
//     store it on a mismatch (BadDigest), e.g. if bytes were damaged on the
//     way.
//
// The payload is sent with x-amz-content-sha256 UNSIGNED-PAYLOAD, as
// minio-go does over TLS anyway, rather than with per-chunk SigV4
// signatures (minio-go's default over plain HTTP). Content-MD5 is one of
// the signed headers, so the body is still bound to the signed request, and
// each byte is hashed once (MD5) instead of twice (MD5 and SHA-256).
// Then the recent/ marker is written. A re-Put of an existing block uploads
// it again and rewrites the marker, which refreshes its mtime. If the marker
// write fails, Put fails, but the data object stays: it is complete and
// verified, and dated by an older marker or its own LastModified.
//
// A Put whose size is unknown (-1, a chunked request) uses a multipart
// upload in 5 MiB parts, each with its own Content-MD5; that part is the only
// buffer a Put ever holds. Parts become an object only when the upload is
// completed, which happens after the verifying reader has checked the whole
// body; on failure minio-go aborts the upload (if even that fails, e.g.
// because the context was cancelled, the incomplete upload stays invisible
// until the bucket's lifecycle rule or MinIO's stale-upload cleanup removes
// it).
//
// # Reads
//
// Get uses minio.Core.GetObject, which fails on the response status, so a
// missing block is KindNotFound before any byte is read. Chunk checksums
// live in a companion object, sums/H (S3 metadata is sent before the body,
// and the checksums are only known once it has been read): Put uploads it
// right after the data object, Get fetches it first (one small GET) and
// returns it in BlockInfo.Checksums, and the caller checks every chunk
// (blockstore.NewChunkReader). A block without a usable companion (written
// before checksums, or a crash between the two uploads) is verified the old
// way: a read of the whole block is MD5-checked while streaming, the reader
// withholding the final chunk and failing with KindCorrupt if the bytes do
// not hash to H; a range read of it is passed through unverified. The
// companion is deleted with the block (Trash with Lifetime 0, EmptyTrash).
//
// # Trash
//
// Trash, Untrash and EmptyTrash follow the directory volume's semantics
// with cheap S3 operations (no object is ever read or re-uploaded by the
// volume; copies are server-side):
//   - Trash: if the block's mtime is less than Policy.MinAge ago, do nothing
//     (and succeed). With Policy.Lifetime 0, delete H and its marker, as
//     the Volume contract says (Arvados refuses this unless UnsafeDelete is
//     set: warning about it is the configuration's job).
//     Otherwise CopyObject H → trash/H, then delete H; the marker stays.
//   - Untrash: CopyObject trash/H → H, rewrite the marker (the block comes
//     back with mtime now), delete trash/H. KindNotFound without a trash copy.
//   - EmptyTrash: for each trash/H, dated by its LastModified: if the marker
//     shows a write or touch less than MinAge before the trash, or after it,
//     Trash raced with a Put (two keepstores, or a re-Put after trashing):
//     if H exists the block was re-written, so only trash/H is deleted, else
//     the block is restored from trash/H. Otherwise, once trash/H is older
//     than Lifetime it is deleted, and the marker too when H does not exist.
//
// Within one process a striped lock per hash makes Put and Touch (shared)
// exclude Trash, Untrash and EmptyTrash's handling of that hash
// (exclusive), so a Trash can never delete a copy that a concurrent Put has
// just written. Across processes sharing a bucket, EmptyTrash's race check
// above is the safety net, as in Arvados. Unlike Arvados, reads do not try
// to repair such a race on a miss (that would cost requests on every miss of
// every volume); a block so trashed is back after the next EmptyTrash.
//
// Two more checks from Arvados guard the trash lifetime: Trash refuses
// (KindUnavailable) to overwrite a trash copy that EmptyTrash may delete
// within RaceWindow, since a concurrent EmptyTrash elsewhere could delete the
// new copy as if it were the old one; and Trash checks that the server gave
// the trash copy a fresh LastModified (within 10 minutes), because a server
// that keeps the source's timestamp would make every trash look expired.
//
// # Errors, retries and limits
//
// One function (classify) maps S3 and network errors to kinds: NoSuchKey is
// KindNotFound; AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch and
// similar are KindForbidden; BadDigest (Content-MD5 mismatch) is
// KindHashMismatch; NoSuchBucket is KindUnavailable with a message naming
// the bucket; SlowDown, 5xx answers, timeouts, refused or reset connections
// are retried with exponential back-off and jitter (from about 100 ms,
// Config.Retries times) and then KindUnavailable. Retried requests are all
// idempotent (HEAD, GET, copy, delete, list, marker PUT); a block upload is
// retried only if no byte of its body was consumed. Messages name the
// endpoint and bucket, never the credentials. minio-go's own retries are
// turned off.
//
// Every S3 request waits for one of Config.Concurrency slots; a Get holds its
// slot until its reader is closed.
//
// # Metrics
//
// With a Registerer, namespace "keepstore", subsystem "s3", all labelled by
// the volume's DeviceID: ops_total{volume,op} and errors_total{volume,op,kind}
// count S3 requests (each retry counts) by request type, bytes_total{volume,
// direction} counts block bytes sent ("out") and received ("in"), and
// op_seconds{volume,op} is the latency until the response headers (for an
// upload: until the server answered). Several volumes share the collectors
// of one Registerer.
package s3volume
