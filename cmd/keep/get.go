package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/keepclient"
	"github.com/keepgate/keepgate/manifest"
)

// loadFiles loads the manifest named by src and returns its files.
func (a *app) loadFiles(ctx context.Context, c *keepclient.Client, src string) ([]manifest.File, error) {
	m, err := a.loadManifest(ctx, c, src)
	if err != nil {
		return nil, err
	}
	return m.Files()
}

// loadManifest reads SOURCE: "-" (stdin), an existing file holding
// manifest text, a collection UUID (through the proxy's Arvados API), or
// a block locator whose block is the manifest.
func (a *app) loadManifest(ctx context.Context, c *keepclient.Client, src string) (*manifest.Manifest, error) {
	var text []byte
	switch {
	case src == "-":
		b, err := io.ReadAll(io.LimitReader(a.stdin, blockSize+1))
		if err != nil {
			return nil, fmt.Errorf("reading the manifest from standard input: %w", err)
		}
		text = b
	case fileExists(src):
		b, err := os.ReadFile(src)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", src, unwrapPathErr(err))
		}
		text = b
	case collectionUUIDRe.MatchString(src):
		rec, err := newCollections(a.set).load(ctx, src)
		if err != nil {
			return nil, fmt.Errorf("fetching collection %s: %w", src, err)
		}
		text = []byte(rec.ManifestText)
	default:
		loc, err := blockstore.ParseLocator(src)
		if err != nil {
			return nil, usageErr("%q is neither a file nor a locator (want hash+size+A…, as keep put prints)", trunc(src))
		}
		if !loc.HasSize() {
			return nil, usageErr("locator %q has no size", trunc(src))
		}
		b, err := c.ReadBlock(ctx, loc, nil)
		if err != nil {
			return nil, fmt.Errorf("fetching the manifest: %w", err)
		}
		text = b
	}
	m, err := manifest.Parse(string(text))
	if err != nil {
		return nil, fmt.Errorf("%s is not a manifest: %w (keep cat LOCATOR writes a raw block)", trunc(src), err)
	}
	return m, nil
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func trunc(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}

// outFile is one file being restored: a temp file beside its final
// name, renamed into place once every byte is written.
type outFile struct {
	manifest.File
	left    atomic.Int64 // bytes not yet written
	once    sync.Once
	fh      *os.File
	tmp     string
	openErr error
	done    atomic.Bool
}

// use is one chunk of a file to be cut from a block.
type use struct {
	f        *outFile
	fileOff  int64
	blockOff int64
	n        int64
}

type blockTask struct {
	loc  blockstore.Locator
	uses []use
}

type getRun struct {
	a       *app
	root    *os.Root
	client  *keepclient.Client
	tr      *tracker
	threads int
	mu      sync.Mutex
	temps   map[string]bool // temp files not yet renamed
}

func (a *app) cmdGet(ctx context.Context, args []string) error {
	flags := pflag.NewFlagSet("get", pflag.ContinueOnError)
	var cf commonFlags
	addCommon(flags, &cf, 4)
	force := flags.BoolP("force", "f", false, "overwrite existing files")
	skip := flags.Bool("skip-existing", false, "leave files that already exist alone (their content is not checked)")
	if err := a.parse(flags, "get [flags] SOURCE DEST", getHelp, args); err != nil {
		return err
	}
	if flags.NArg() != 2 {
		return usageErr("get needs SOURCE and DEST (see keep help get)")
	}
	if *force && *skip {
		return usageErr("--force and --skip-existing exclude each other")
	}
	s, err := a.settings(flags, &cf)
	if err != nil {
		return err
	}
	tr := newTracker("get", a.renderer(s))
	client, err := a.client(s, tr)
	if err != nil {
		return err
	}
	files, err := a.loadFiles(ctx, client, flags.Arg(0))
	if err != nil {
		return err
	}
	dest := flags.Arg(1)
	if err := os.MkdirAll(dest, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dest, unwrapPathErr(err))
	}
	root, err := os.OpenRoot(dest)
	if err != nil {
		return fmt.Errorf("opening %s: %w", dest, unwrapPathErr(err))
	}
	defer root.Close()

	// Refuse (or skip) existing files before anything is downloaded.
	var todo []*outFile
	var conflicts []string
	var total int64
	for _, f := range files {
		fi, err := root.Lstat(f.Path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil && !f.Dir:
			return fmt.Errorf("%s: %w", path.Join(dest, f.Path), unwrapPathErr(err))
		case f.Dir:
			if err == nil && !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", path.Join(dest, f.Path))
			}
		case fi.IsDir():
			return fmt.Errorf("%s is a directory; the manifest has a file there", path.Join(dest, f.Path))
		case *skip:
			tr.FileDone(f.Path, f.Size, "skipped")
			continue
		case !*force:
			conflicts = append(conflicts, path.Join(dest, f.Path))
			continue
		}
		of := &outFile{File: f}
		of.left.Store(f.Size)
		todo = append(todo, of)
		total += f.Size
	}
	if len(conflicts) > 0 {
		more := ""
		if len(conflicts) > 3 {
			more = fmt.Sprintf(" and %d more", len(conflicts)-3)
			conflicts = conflicts[:3]
		}
		return usageErr("%s%s already exist: use --force to overwrite, or --skip-existing", strings.Join(conflicts, ", "), more)
	}
	g := &getRun{a: a, root: root, client: client, tr: tr, threads: s.Threads, temps: map[string]bool{}}
	start := time.Now()
	tr.Start(total, 0)
	err = g.run(ctx, todo)
	tr.Finish(err == nil)
	if err != nil {
		g.cleanup()
		return err
	}
	el := time.Since(start)
	if s.JSON {
		a.jsonOut(map[string]any{"event": "result", "op": "get", "files": len(todo), "bytes": total, "dest": dest,
			"seconds": el.Seconds(), "bytes_per_second": int64(float64(total) / max(el.Seconds(), 1e-9))})
	} else if a.tty && !s.Quiet {
		fmt.Fprintf(a.stderr, "keep get: %d files, %s in %s (%s/s)\n", len(todo), humanBytes(total), el.Round(100*time.Millisecond),
			humanBytes(int64(float64(total)/max(el.Seconds(), 1e-9))))
	}
	return nil
}

// run makes directories and empty files, then downloads each distinct
// block once, with threads workers, and writes its chunks into the files.
func (g *getRun) run(ctx context.Context, files []*outFile) error {
	var tasks []*blockTask
	byKey := map[blockKey]*blockTask{}
	for _, f := range files {
		if f.Dir {
			if err := g.root.MkdirAll(f.Path, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", f.Path, unwrapPathErr(err))
			}
			continue
		}
		if d := dirOf(f.Path); d != "" {
			if err := g.root.MkdirAll(d, 0o755); err != nil {
				return fmt.Errorf("creating %s: %w", d, unwrapPathErr(err))
			}
		}
		if f.Size == 0 {
			if err := g.finish(f); err != nil {
				return err
			}
			continue
		}
		var off int64
		for _, c := range f.Chunks {
			k := blockKey{c.Locator.Hash, c.Locator.Size}
			t := byKey[k]
			if t == nil {
				t = &blockTask{loc: c.Locator}
				byKey[k] = t
				tasks = append(tasks, t)
			}
			t.uses = append(t.uses, use{f: f, fileOff: off, blockOff: c.Offset, n: c.Len})
			off += c.Len
		}
	}
	eg, ectx := errgroup.WithContext(ctx)
	next := make(chan *blockTask)
	eg.Go(func() error {
		defer close(next)
		for _, t := range tasks {
			select {
			case next <- t:
			case <-ectx.Done():
				return ectx.Err()
			}
		}
		return nil
	})
	for range g.threads {
		eg.Go(func() error {
			var buf []byte
			for t := range next {
				var err error
				if buf, err = g.fetch(ectx, t, buf); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return eg.Wait()
}

// fetch downloads one block into buf (reused between blocks) and writes
// its chunks. While a block serves a single file, progress is shown as it
// arrives; otherwise as chunks are written.
func (g *getRun) fetch(ctx context.Context, t *blockTask, buf []byte) ([]byte, error) {
	single := len(t.uses) == 1 && t.uses[0].n == t.loc.Size
	var key string
	var opts []keepclient.CallOption
	if single {
		f := t.uses[0].f
		key = "f:" + f.Path
		g.tr.Item(key, f.Path, f.Size, f.Size-f.left.Load())
		opts = append(opts, keepclient.WithProgress(func(n int64) { g.tr.Add(key, n) }))
	}
	data, err := g.client.ReadBlock(ctx, t.loc, buf, opts...)
	if err != nil {
		var names []string
		for _, u := range t.uses {
			names = append(names, u.f.Path)
		}
		return buf, fmt.Errorf("%s: %w", strings.Join(uniq(names), ", "), err)
	}
	for _, u := range t.uses {
		if err := g.write(u, data[u.blockOff:u.blockOff+u.n], !single); err != nil {
			return data, err
		}
	}
	return data, nil
}

func uniq(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	if len(out) > 3 {
		out = append(out[:3], fmt.Sprintf("and %d more files", len(out)-3))
	}
	return out
}

// write puts one chunk into its file's temp file and finishes the file
// when it is complete.
func (g *getRun) write(u use, b []byte, count bool) error {
	f := u.f
	f.once.Do(func() { f.fh, f.tmp, f.openErr = g.createTemp(f.Path) })
	if f.openErr != nil {
		return f.openErr
	}
	if _, err := f.fh.WriteAt(b, u.fileOff); err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, unwrapPathErr(err))
	}
	if count {
		key := "f:" + f.Path
		if f.Size >= 8<<20 {
			g.tr.Item(key, f.Path, f.Size, f.Size-f.left.Load())
		}
		g.tr.Add(key, u.n)
	}
	if f.left.Add(-u.n) == 0 {
		return g.finish(f)
	}
	return nil
}

// createTemp makes a new temp file beside name (O_EXCL, random name).
func (g *getRun) createTemp(name string) (*os.File, string, error) {
	for range 10 {
		var r [8]byte
		rand.Read(r[:])
		tmp := path.Join(dirOf(name), ".keep-get-"+hex.EncodeToString(r[:])+".tmp")
		fh, err := g.root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("creating a temporary file for %s: %w", name, unwrapPathErr(err))
		}
		g.mu.Lock()
		g.temps[tmp] = true
		g.mu.Unlock()
		return fh, tmp, nil
	}
	return nil, "", fmt.Errorf("creating a temporary file for %s: too many name collisions", name)
}

// finish syncs a complete file, renames it into place and syncs its
// directory.
func (g *getRun) finish(f *outFile) error {
	if f.Size == 0 {
		fh, tmp, err := g.createTemp(f.Path)
		if err != nil {
			return err
		}
		f.fh, f.tmp = fh, tmp
	}
	err := f.fh.Sync()
	if cerr := f.fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = g.root.Rename(f.tmp, f.Path)
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, unwrapPathErr(err))
	}
	g.mu.Lock()
	delete(g.temps, f.tmp)
	g.mu.Unlock()
	dir := dirOf(f.Path)
	if dir == "" {
		dir = "."
	}
	if d, err := g.root.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	f.done.Store(true)
	g.tr.ItemDone("f:" + f.Path)
	g.tr.FileDone(f.Path, f.Size, "written")
	return nil
}

// cleanup removes the temp files of files that were not finished.
func (g *getRun) cleanup() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for tmp := range g.temps {
		g.root.Remove(tmp)
	}
}

func (a *app) cmdCat(ctx context.Context, args []string) error {
	flags := pflag.NewFlagSet("cat", pflag.ContinueOnError)
	var cf commonFlags
	addCommon(flags, &cf, 4)
	if err := a.parse(flags, "cat [flags] SOURCE [PATH]", catHelp, args); err != nil {
		return err
	}
	if flags.NArg() < 1 || flags.NArg() > 2 {
		return usageErr("cat needs SOURCE and, for a manifest, PATH (see keep help cat)")
	}
	s, err := a.settings(flags, &cf)
	if err != nil {
		return err
	}
	client, err := a.client(s, newTracker("cat", nopRenderer{w: a.stderr}))
	if err != nil {
		return err
	}
	if flags.NArg() == 1 {
		loc, err := blockstore.ParseLocator(flags.Arg(0))
		if err != nil || !loc.HasSize() {
			return usageErr("without PATH, SOURCE must be a block locator with a size")
		}
		b, err := client.ReadBlock(ctx, loc, nil)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(b)
		return err
	}
	files, err := a.loadFiles(ctx, client, flags.Arg(0))
	if err != nil {
		return err
	}
	want := strings.TrimPrefix(flags.Arg(1), "./")
	for _, f := range files {
		if f.Path == want && !f.Dir {
			return catFile(ctx, client, f, a.stdout, s.Threads)
		}
	}
	return usageErr("%q is not a file in the manifest (keep ls lists them)", flags.Arg(1))
}

// catFile writes a file's chunks in order, fetching up to threads blocks
// ahead; only verified blocks are written.
func catFile(ctx context.Context, c *keepclient.Client, f manifest.File, w io.Writer, threads int) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		data []byte
		err  error
	}
	sem := make(chan struct{}, threads)
	futures := make(chan chan result, threads)
	go func() {
		defer close(futures)
		for _, ch := range f.Chunks {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			fut := make(chan result, 1)
			go func() {
				b, err := c.ReadBlock(ctx, ch.Locator, nil)
				if err == nil {
					b = b[ch.Offset : ch.Offset+ch.Len]
				}
				fut <- result{b, err}
			}()
			select {
			case futures <- fut:
			case <-ctx.Done():
				return
			}
		}
	}()
	for fut := range futures {
		r := <-fut
		<-sem
		if r.err != nil {
			return r.err
		}
		if _, err := w.Write(r.data); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (a *app) cmdLs(ctx context.Context, args []string) error {
	flags := pflag.NewFlagSet("ls", pflag.ContinueOnError)
	var cf commonFlags
	addCommon(flags, &cf, 4)
	if err := a.parse(flags, "ls [flags] SOURCE", lsHelp, args); err != nil {
		return err
	}
	if flags.NArg() != 1 {
		return usageErr("ls needs SOURCE (see keep help ls)")
	}
	// A manifest file can be listed without a proxy.
	var client *keepclient.Client
	if !fileExists(flags.Arg(0)) && flags.Arg(0) != "-" {
		s, err := a.settings(flags, &cf)
		if err != nil {
			return err
		}
		if client, err = a.client(s, newTracker("ls", nopRenderer{w: a.stderr})); err != nil {
			return err
		}
	}
	files, err := a.loadFiles(ctx, client, flags.Arg(0))
	if err != nil {
		return err
	}
	for _, f := range files {
		if cf.json {
			a.jsonOut(map[string]any{"path": f.Path, "size": f.Size, "dir": f.Dir, "blocks": len(f.Chunks)})
			continue
		}
		if f.Dir {
			fmt.Fprintf(a.stdout, "%15s  %s/\n", "-", f.Path)
		} else {
			fmt.Fprintf(a.stdout, "%15d  %s\n", f.Size, f.Path)
		}
	}
	return nil
}
