package dirvolume

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/keepgate/keepgate/blockstore"
)

// defaultReserve is the free space kept when Config.Reserve is 0; it is
// Arvados' threshold for a full directory volume.
const defaultReserve = 64 << 20

// Config configures a directory volume.
type Config struct {
	// Root is the absolute path of an existing directory holding the blocks.
	Root string
	// Reserve is the number of bytes to keep free on the filesystem: a Put
	// that would leave less fails with blockstore.KindFull. 0 means 64 MiB;
	// a negative value disables the check. Free space is measured on Linux,
	// macOS and FreeBSD; elsewhere New requires a negative Reserve.
	Reserve int64
	// Compress stores compressible blocks as zstd frames (see the package
	// doc). Reads handle both forms whatever this is set to.
	Compress bool
	// Policy says how old a block must be before Trash moves it, and how
	// long trash is kept before EmptyTrash deletes it.
	Policy blockstore.TrashPolicy
	// Logger receives warnings and notable events; nil discards them.
	Logger *slog.Logger
}

// Volume is a blockstore.Volume on a local directory. Create it with New and
// release it with Close.
type Volume struct {
	root     *os.Root
	rootDir  *os.File // Root itself, for statfs and fsync after a Mkdir
	rootPath string
	reserve  int64
	compress bool
	policy   blockstore.TrashPolicy
	log      *slog.Logger

	// zstSeen is false only while no compressed file can exist in the
	// volume (Compress off and none found by New): lookups then need a
	// single stat and never a readdir.
	zstSeen atomic.Bool
	// locks serialize the renames of one hash (striped by hash).
	locks [64]sync.Mutex
	// openTemp creates a temp file for Put; tests replace it to inject
	// write failures.
	openTemp func(name string) (tempFile, error)
	// afterSums, when set (tests), runs between the sidecar's rename and
	// the block's in Put.
	afterSums func()

	closeOnce sync.Once
	closeErr  error
}

// tempFile is what Put writes a block into.
type tempFile interface {
	io.Writer
	Sync() error
	Close() error
}

var _ blockstore.Volume = (*Volume)(nil)

// New opens the directory volume described by cfg. Root must be an absolute
// path to an existing directory. New removes the temp files that a crash
// may have left behind (walking every hex subdirectory once), so a directory
// must not be served by two Volumes at a time.
func New(cfg Config) (*Volume, error) {
	const op = "dirvolume.New"
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, blockstore.E(op, blockstore.KindBadRequest,
			fmt.Sprintf("volume root %q must be an absolute path: fix the volume's Root setting", cfg.Root))
	}
	rootPath := filepath.Clean(cfg.Root)
	fi, err := os.Stat(rootPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, blockstore.E(op, blockstore.KindUnavailable,
			fmt.Sprintf("volume root %s does not exist: create the directory or fix the volume's Root setting", rootPath))
	case err != nil:
		return nil, blockstore.E(op, blockstore.KindUnavailable,
			fmt.Sprintf("cannot access volume root %s: check the path and its permissions", rootPath), err)
	case !fi.IsDir():
		return nil, blockstore.E(op, blockstore.KindUnavailable,
			fmt.Sprintf("volume root %s is not a directory: fix the volume's Root setting", rootPath))
	}
	root, err := os.OpenRoot(rootPath)
	if err != nil {
		return nil, blockstore.E(op, blockstore.KindUnavailable,
			fmt.Sprintf("cannot open volume root %s: check its permissions", rootPath), err)
	}
	rootDir, err := root.Open(".")
	if err != nil {
		root.Close()
		return nil, blockstore.E(op, blockstore.KindUnavailable,
			fmt.Sprintf("cannot open volume root %s: check its permissions", rootPath), err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	v := &Volume{
		root:     root,
		rootDir:  rootDir,
		rootPath: rootPath,
		reserve:  cfg.Reserve,
		compress: cfg.Compress,
		policy:   cfg.Policy,
		log:      logger.With("volume", "dir:"+rootPath),
	}
	if v.reserve == 0 {
		v.reserve = defaultReserve
	}
	v.openTemp = func(name string) (tempFile, error) {
		return v.root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	}
	v.zstSeen.Store(cfg.Compress)
	if v.reserve > 0 {
		if _, err := v.freeBytes(); err != nil {
			v.Close()
			return nil, blockstore.E(op, blockstore.KindUnavailable,
				fmt.Sprintf("cannot measure free space on volume %s: set Reserve to -1 to disable the check", rootPath), err)
		}
	}
	if err := v.removeTempFiles(); err != nil {
		v.Close()
		return nil, err
	}
	return v, nil
}

// removeTempFiles deletes the temp files of Puts interrupted by a crash and
// notes whether any compressed file exists.
func (v *Volume) removeTempFiles() error {
	const op = "dirvolume.New"
	dirs, err := v.subdirs("")
	if err != nil {
		return blockstore.E(op, blockstore.KindUnavailable,
			fmt.Sprintf("cannot list volume root %s: check its permissions", v.rootPath), err)
	}
	removed, failed := 0, 0
	for _, dir := range dirs {
		var sidecars []string
		err := v.eachName(dir, func(name string) error {
			if hash, ok := isSumsName(name); ok {
				sidecars = append(sidecars, hash)
				return nil
			}
			if strings.HasPrefix(name, tmpPrefix) {
				if err := v.root.Remove(join(dir, name)); err != nil && !isNotExist(err) {
					v.log.Warn("cannot remove leftover temp file", "file", join(dir, name), "err", err)
					failed++
				} else {
					removed++
				}
				return nil
			}
			if n, ok := parseName(name); ok && n.zst {
				v.zstSeen.Store(true)
			}
			return nil
		})
		if err != nil {
			return blockstore.E(op, blockstore.KindUnavailable,
				fmt.Sprintf("cannot list volume directory %s: check its permissions", filepath.Join(v.rootPath, dir)), err)
		}
		for _, hash := range sidecars {
			if v.dropOrphanSums(hash) {
				removed++
			}
		}
	}
	if removed > 0 || failed > 0 {
		v.log.Info("removed temp files left by interrupted writes", "removed", removed, "failed", failed)
	}
	return nil
}

// Close releases the volume's directory handles. Calls after the first
// return the first result; other methods fail after Close.
func (v *Volume) Close() error {
	v.closeOnce.Do(func() {
		err1 := v.rootDir.Close()
		err2 := v.root.Close()
		v.closeErr = errors.Join(err1, err2)
	})
	return v.closeErr
}

// DeviceID implements blockstore.Volume: "dir:" followed by the cleaned
// Root.
func (v *Volume) DeviceID() string { return "dir:" + v.rootPath }

// lock returns the mutex serializing renames of h.
func (v *Volume) lock(h blockstore.Hash) *sync.Mutex {
	return &v.locks[int(h[0])%len(v.locks)]
}

// lockLive takes h's lock for a metadata operation (touch, trash,
// untrash) unless ctx is already done; the caller defers unlock.
func (v *Volume) lockLive(ctx context.Context, op string, h blockstore.Hash) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, blockstore.E(op, err)
	}
	mu := v.lock(h)
	mu.Lock()
	return mu.Unlock, nil
}

// subdirs lists the hex subdirectories whose names are compatible with the
// index prefix, sorted. Symbolic links are not followed.
func (v *Volume) subdirs(prefix string) ([]string, error) {
	if len(prefix) >= 3 {
		dir := prefix[:3]
		fi, err := v.root.Lstat(dir)
		if isNotExist(err) || err == nil && !fi.IsDir() {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []string{dir}, nil
	}
	f, err := v.root.Open(".")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ents, err := f.ReadDir(-1)
	if err != nil {
		return nil, err
	}
	var dirs []string
	for _, e := range ents {
		if name := e.Name(); isSubdirName(name) && e.IsDir() && name[:len(prefix)] == prefix {
			dirs = append(dirs, name)
		}
	}
	sort.Strings(dirs)
	return dirs, nil
}

// eachName calls fn with the name of every entry of the subdirectory dir,
// in directory order; a missing dir has no entries.
func (v *Volume) eachName(dir string, fn func(string) error) error {
	f, err := v.root.Open(dir)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	for {
		names, err := f.Readdirnames(1024)
		for _, name := range names {
			if err := fn(name); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// namesOf returns the parsed names of every block and trash file of the
// block hash (32 hex) in its subdirectory.
func (v *Volume) namesOf(hash string) ([]fileName, error) {
	var out []fileName
	err := v.eachName(subdir(hash), func(name string) error {
		if len(name) >= 32 && name[:32] == hash {
			if n, ok := parseName(name); ok {
				out = append(out, n)
			}
		}
		return nil
	})
	return out, err
}

// isNotExist reports whether err says a file or one of its parent
// directories is missing.
func isNotExist(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

// isNoSpace reports whether err is the filesystem running out of space or
// quota.
func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// ioErr classifies a filesystem error of op: out of space is KindFull and a
// read-only filesystem KindReadOnly, with a message for the operator;
// anything else is internal with msg.
func (v *Volume) ioErr(op, msg string, err error) error {
	if isNoSpace(err) {
		return blockstore.E(op, blockstore.KindFull,
			fmt.Sprintf("volume %s is full (no space left on device): free some space or add a volume", v.rootPath), err)
	}
	if errors.Is(err, syscall.EROFS) {
		return blockstore.E(op, blockstore.KindReadOnly,
			fmt.Sprintf("volume %s is on a read-only filesystem: remount it read-write or configure the volume read-only", v.rootPath), err)
	}
	return blockstore.E(op, blockstore.KindInternal, msg, err)
}

func notFound(op string) error { return blockstore.E(op, blockstore.KindNotFound) }
