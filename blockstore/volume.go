package blockstore

import (
	"context"
	"io"
	"time"
)

// BlockInfo describes one stored copy of a block.
type BlockInfo struct {
	Hash  Hash
	Size  int64
	Mtime time.Time // last written or touched
	// Checksums, set by Get only, are the copy's chunk checksums when it
	// has usable ones; the caller reads through NewChunkReader then. Nil
	// for a copy written before checksums existed, or whose checksum data
	// is missing or damaged (the volume logs that): the caller verifies
	// such a copy by its MD5, and may then give it checksums with
	// SetChecksums.
	Checksums *Checksums
}

// TrashPolicy is what a volume needs to know to trash blocks safely.
type TrashPolicy struct {
	// MinAge: a block touched more recently than this is never trashed
	// (Trash is then a silent no-op). It is the signature TTL, so a block
	// somebody holds a valid signature for cannot disappear.
	MinAge time.Duration
	// Lifetime: how long a trashed block stays recoverable with Untrash
	// before EmptyTrash deletes it. 0 deletes at once on Trash.
	Lifetime time.Duration
}

// Volume is one place blocks live: a directory, an S3 bucket, memory.
//
// Contract, checked for every implementation by blockstore/volumetest:
//   - Put is all or nothing. It reads r to its end through NewPutReader,
//     which verifies that the bytes hash to h and number exactly size (or,
//     for a Vouched body, match its sender's chunk checksums), and only
//     then makes the block visible, together with the chunk checksums the
//     PutReader computed: a Get that finds the block finds them too (a
//     crash may leave checksums without their block, never a new block
//     without checksums). On any failure — wrong hash, short or long
//     body, r failing, ctx cancelled, Full — no trace of the block is
//     visible to Get, Stat or Index. Putting a block that already exists
//     refreshes its mtime. Concurrent Puts of one hash are safe.
//   - Get returns a reader over bytes [off, off+n) of the block (n < 0: to
//     the end), and the block's info. A missing block is KindNotFound,
//     reported before any byte; off beyond the size is KindBadRange. The
//     reader returns the raw stored bytes (uncompressed); callers verify
//     them: chunk by chunk with info.Checksums when the copy has them
//     (reading from chunk boundaries), else by the MD5 of a full read.
//   - SetChecksums stores chunk checksums for a copy that has none, after
//     the caller verified the whole copy by its MD5. KindNotFound when the
//     block is absent.
//   - Stat, Touch: KindNotFound when absent. Touch sets mtime to now.
//   - Trash hides the block from Get/Stat/Index (a silent no-op when the
//     block is younger than the policy's MinAge); Untrash brings it back
//     (KindNotFound if it is not in the trash); EmptyTrash deletes trash
//     older than the policy's Lifetime.
//   - Index calls fn for every visible block whose hex hash starts with
//     prefix, stopping at fn's first error.
//   - Write operations of a volume that refuses writes return KindReadOnly;
//     a volume out of space returns KindFull.
type Volume interface {
	Put(ctx context.Context, h Hash, r io.Reader, size int64) error
	Get(ctx context.Context, h Hash, off, n int64) (io.ReadCloser, BlockInfo, error)
	Stat(ctx context.Context, h Hash) (BlockInfo, error)
	Touch(ctx context.Context, h Hash) error
	Trash(ctx context.Context, h Hash) error
	Untrash(ctx context.Context, h Hash) error
	EmptyTrash(ctx context.Context) error
	Index(ctx context.Context, prefix string, fn func(BlockInfo) error) error
	SetChecksums(ctx context.Context, h Hash, sums *Checksums) error
	// DeviceID identifies the backing storage, e.g. "dir:/srv/keep0".
	DeviceID() string
}

// ReadOnly wraps v so that Put, Touch, Trash and Untrash fail with
// KindReadOnly; reads pass through. Unwrap returns v, so the optional
// interfaces of the volume underneath stay visible (see As).
func ReadOnly(v Volume) Volume { return readOnly{v} }

type readOnly struct{ Volume }

// Unwrap returns the wrapped volume.
func (r readOnly) Unwrap() Volume { return r.Volume }

// Unwrapper is a volume wrapper (read-only, instrumented, ...) that gives
// access to the volume it wraps. Every wrapper implements it.
type Unwrapper interface{ Unwrap() Volume }

// As finds the first volume in v's wrapper chain (v itself first) that
// implements T, like errors.As for volumes: a wrapper never hides an
// optional interface (ReadVerifier, ...) of what it wraps.
func As[T any](v Volume) (T, bool) {
	for v != nil {
		if t, ok := v.(T); ok {
			return t, true
		}
		u, ok := v.(Unwrapper)
		if !ok {
			break
		}
		v = u.Unwrap()
	}
	var zero T
	return zero, false
}

func roErr(op string) error { return &Error{Op: op, Kind: KindReadOnly, Msg: "volume is read-only"} }

func (readOnly) Put(context.Context, Hash, io.Reader, int64) error { return roErr("Put") }
func (readOnly) Touch(context.Context, Hash) error                 { return roErr("Touch") }
func (readOnly) Trash(context.Context, Hash) error                 { return roErr("Trash") }
func (readOnly) Untrash(context.Context, Hash) error               { return roErr("Untrash") }
func (readOnly) EmptyTrash(context.Context) error                  { return nil }
func (readOnly) SetChecksums(context.Context, Hash, *Checksums) error {
	return roErr("SetChecksums")
}

// CheckRange validates off/n against size and returns the number of bytes
// to read.
func CheckRange(off, n, size int64) (int64, error) {
	if off < 0 || off > size || (off == size && size > 0 && n != 0) {
		return 0, Errorf(KindBadRange, "requested range not satisfiable: offset %d of a %d-byte block", off, size)
	}
	if n < 0 || off+n > size {
		n = size - off
	}
	return n, nil
}

// ReadVerifier is implemented by volumes whose Get verifies whole-block
// reads itself (the last chunk withheld and KindCorrupt returned when the
// bytes do not hash to the block's name), so callers need not hash again.
type ReadVerifier interface {
	VerifiesFullReads() bool
}
