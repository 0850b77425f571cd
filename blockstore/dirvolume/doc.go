// Package dirvolume is a blockstore.Volume on a local directory, laid out
// like an Arvados "unix" volume (KEEP-PROTOCOL.md §9.2) so that an existing
// keepstore directory can be served as is.
//
// # On-disk format
//
// Every block lives in a subdirectory named after the first three hex digits
// of its hash. Below, H is the block's 32-hex MD5, N its uncompressed size in
// decimal (no leading zeros), D a Unix time in seconds:
//
//	Root/abc/H                     a block stored raw: exactly its bytes, no header
//	Root/abc/H.zst.N               a block stored compressed: one zstd frame
//	Root/abc/H.trash.D             a trashed raw block, deleted by EmptyTrash after D
//	Root/abc/H.zst.N.trash.D       a trashed compressed block
//	Root/abc/H.crc32c              the block's chunk checksums (blockstore.Checksums.Marshal)
//	Root/abc/.tmp-H-R              a Put in progress (R random); removed by New
//
// Raw blocks and raw trash use exactly Arvados' names, so Arvados and
// keepgate can read each other's uncompressed volumes. Compressed names
// deliberately do not match Arvados' patterns: an Arvados keepstore ignores
// them instead of serving zstd bytes as block content. Temp names start with
// a dot and never parse as a block. Locators, hashes, sizes in Index and
// Stat, and bytes returned by Get are always those of the uncompressed
// block; the uncompressed size is in the file name so that Index needs no
// more than the readdir and the stat it does anyway.
//
// Only regular files are blocks; symbolic links and other entries are
// ignored, and every file access goes through an os.Root, so nothing outside
// Root is ever read, written or listed.
//
// # Compression
//
// With Config.Compress, Put compresses the first chunk (256 KiB) of a block
// to estimate its compressibility. If that saves at least 1/8, the whole
// block is streamed through a zstd encoder (level SpeedDefault, 1 MiB window
// so that a reader needs about 1 MiB of memory, frame checksum on) and stored
// as H.zst.N; otherwise it is stored raw. A block whose start compresses
// well but whose rest does not may thus end up marginally larger than raw;
// a block whose start does not compress is stored raw even if the rest
// would have. Reading works whatever Compress is set to, so it can be
// switched on or off at any time. A range read of a compressed block
// decompresses and discards the bytes before the offset.
//
// Cost: the raw name is tried first, with one stat. Because a compressed
// name contains the size, finding a block that is not stored raw (a
// compressed block, or a miss) reads its subdirectory's listing, and so does
// Put's cleanup of a copy in the other form. On a volume that has never held
// a compressed file (Compress off, none found by New) this never happens:
// every lookup is a single stat.
//
// # Durability and atomicity
//
// Put streams the body through blockstore.NewVerifyingReader into a temp
// file in the block's subdirectory, sets its mtime to now (ext4 may backdate
// timestamps), fsyncs it, renames it over the final name only after the
// verifying reader reported a clean end, and fsyncs the subdirectory. On any
// failure the temp file is removed and nothing becomes visible. Untrash also
// fsyncs the subdirectory; Trash does not (a trash lost in a crash only
// brings the block back).
//
// Put also writes the block's chunk checksums (CRC32C per 1 MiB of the
// uncompressed bytes, computed by blockstore.NewPutReader) into a synced
// temp file and renames it to H.crc32c just before it renames the block
// into place, under the hash's lock. A crash between the two renames
// leaves a checksum file without a new block — harmless, because the file
// is a function of the block's name (it carries H and its own CRC): it is
// right for any sound copy of H, an older one included, and New and
// EmptyTrash remove a checksum file whose block is gone. A crash can never
// leave a new block without its checksums. One checksum file serves every
// form of the block (raw, compressed, trashed). An Arvados keepstore
// ignores the name. A damaged or foreign checksum file (bad CRC, another
// block's hash or size) is logged and treated as absent: the block is then
// verified by its MD5 and the file rewritten (SetChecksums).
//
// Get returns the stored bytes without checking them; it returns the
// block's checksums in BlockInfo.Checksums, and verification is the
// caller's job (blockstore.NewChunkReader, or the MD5 for a block without
// checksums). It does report a file that ends before its stated size, and
// a compressed file that does not decode to exactly its stated size or
// fails its zstd checksum, as blockstore.KindCorrupt.
//
// # Concurrency
//
// All methods are safe for concurrent use. Within one process, renames of a
// given hash (Put's commit, Trash, Untrash, Touch) are serialized, so a Trash
// cannot move away a copy that a concurrent Put has just written after Trash
// decided the old copy was old enough. One directory must be served by one
// Volume in one process at a time: New removes every temp file it finds.
//
// Free space is checked with statfs before every Put against Config.Reserve;
// unlike Arvados there is no "full" symlink cache, the check is one cheap
// system call.
package dirvolume
