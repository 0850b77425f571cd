package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
)

// The resume cache of `keep put` remembers which pieces of which files are
// already stored. A file is cut into pieces at multiples of 64 MiB; a
// piece is one block of its own, or (a small file) part of a shared
// block. An entry is only used while the file's size and mtime are
// unchanged.
//
// One cache file per proxy, token and list of inputs:
// $XDG_CACHE_HOME/keep/put-<sha256 prefix>.json, guarded by an exclusive
// flock on the matching .lock file, rewritten atomically (temp file,
// fsync, rename) after every stored block.

const cacheVersion = 1

type cacheData struct {
	Version int                    `json:"version"`
	Proxy   string                 `json:"proxy"`
	Files   map[string]*cacheEntry `json:"files"` // by absolute path
}

type cacheEntry struct {
	Size    int64               `json:"size"`
	MtimeNS int64               `json:"mtime_ns"`
	Pieces  map[int]cachedPiece `json:"pieces"`
}

type cachedPiece struct {
	Locator  string `json:"locator"` // signed
	Offset   int64  `json:"offset"`  // of the piece within the block
	Len      int64  `json:"len"`
	Replicas int    `json:"replicas"`
}

type resumeCache struct {
	path string
	lock *os.File
	mu   sync.Mutex // guards data
	wmu  sync.Mutex // serialises checkpoints, so the newest state is the one left
	data cacheData
	off  bool // --no-cache: remember nothing
}

// cacheDir is $XDG_CACHE_HOME/keep or ~/.cache/keep.
func cacheDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "keep"), nil
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".cache", "keep"), nil
	}
	return "", errors.New("neither XDG_CACHE_HOME nor HOME is set")
}

// cacheName derives the cache file's name from the proxy, the token (as a
// hash: signatures are only good for the token that made them) and the
// sorted input keys.
func cacheName(proxy, token string, inputs []string) string {
	in := append([]string(nil), inputs...)
	sort.Strings(in)
	th := sha256.Sum256([]byte(token))
	h := sha256.New()
	fmt.Fprintf(h, "keep-put\x00%s\x00%x\x00%s", strings.TrimRight(proxy, "/"), th[:8], strings.Join(in, "\x00"))
	return "put-" + hex.EncodeToString(h.Sum(nil))[:32]
}

// openCache locks and loads the cache. fresh ignores what is stored
// (--no-resume); off keeps nothing at all (--no-cache).
func openCache(dir, name, proxy string, fresh, off bool) (*resumeCache, error) {
	c := &resumeCache{off: off, data: cacheData{Version: cacheVersion, Proxy: proxy, Files: map[string]*cacheEntry{}}}
	if off {
		return c, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("resume cache: %w", err)
	}
	c.path = filepath.Join(dir, name+".json")
	lock, err := os.OpenFile(filepath.Join(dir, name+".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("resume cache: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &exitError{code: exitFailure, msg: "another keep put is already uploading these paths (its resume cache " + c.path + " is locked); wait for it to finish"}
		}
		return nil, fmt.Errorf("resume cache lock: %w", err)
	}
	c.lock = lock
	if fresh {
		return c, nil
	}
	b, err := os.ReadFile(c.path)
	switch {
	case os.IsNotExist(err):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("resume cache: %w", err)
	}
	var d cacheData
	if json.Unmarshal(b, &d) != nil || d.Version != cacheVersion || d.Files == nil {
		return c, nil // unreadable or old: start over
	}
	c.data = d
	return c, nil
}

// entry returns the cached pieces of a file if its size and mtime still
// match, and (re)sets the entry otherwise.
func (c *resumeCache) entry(abs string, size, mtime int64) map[int]cachedPiece {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.data.Files[abs]
	if e == nil || e.Size != size || e.MtimeNS != mtime {
		e = &cacheEntry{Size: size, MtimeNS: mtime, Pieces: map[int]cachedPiece{}}
		c.data.Files[abs] = e
	}
	out := make(map[int]cachedPiece, len(e.Pieces))
	for k, v := range e.Pieces {
		out[k] = v
	}
	return out
}

// forget drops a piece that turned out to be unusable.
func (c *resumeCache) forget(abs string, piece int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.data.Files[abs]; e != nil {
		delete(e.Pieces, piece)
	}
}

// record notes stored pieces; checkpoint writes them out.
func (c *resumeCache) record(abs string, piece int, p cachedPiece) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.data.Files[abs]; e != nil {
		e.Pieces[piece] = p
	}
}

// retain drops entries for files that are no longer part of the inputs.
func (c *resumeCache) retain(keep map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.data.Files {
		if !keep[k] {
			delete(c.data.Files, k)
		}
	}
}

// checkpoint writes the cache atomically: temp file, fsync, rename, and
// an fsync of the directory, so a crash leaves the old or the new state.
func (c *resumeCache) checkpoint() error {
	if c.off {
		return nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	b, err := json.Marshal(&c.data)
	c.mu.Unlock()
	if err != nil {
		return err
	}
	dir := filepath.Dir(c.path)
	tmp, err := os.CreateTemp(dir, filepath.Base(c.path)+".tmp*")
	if err != nil {
		return fmt.Errorf("resume cache: %w", err)
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), c.path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("resume cache: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Close releases the lock.
func (c *resumeCache) Close() {
	if c.lock != nil {
		c.lock.Close()
		c.lock = nil
	}
}
