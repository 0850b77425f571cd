package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/keepclient"
	"github.com/keepgate/keepgate/manifest"
)

// Block layout. These are variables only so that tests can use small
// blocks; the program never changes them.
var (
	blockSize int64 = blockstore.MaxBlockSize // 64 MiB
	// packLimit: files up to half a block are packed together into shared
	// blocks (as arv-put does); larger files get blocks of their own.
	packLimit = blockSize / 2
)

// recheckWindow: cached locators whose signature expires sooner than this
// are confirmed with HEAD before they are reused.
const recheckWindow = 24 * time.Hour

// upFile is one input file and the chunks that hold it, by piece.
type upFile struct {
	srcFile
	chunks []manifest.Chunk // piece i covers bytes [i*64MiB, …)
	left   atomic.Int64     // pieces not yet stored
	cached int64            // bytes found in the resume cache
}

func (f *upFile) pieces() int { return int((f.Size + blockSize - 1) / blockSize) }

func (f *upFile) pieceLen(i int) int64 { return min(blockSize, f.Size-int64(i)*blockSize) }

// piece is part of a block: n bytes of file f from fileOff, at blockOff.
type piece struct {
	f        *upFile
	index    int
	fileOff  int64
	blockOff int64
	n        int64
}

// job is one block to read and store.
type job struct {
	seq    int
	pieces []piece
	size   int64
}

func (j *job) item() (key, label string, size, done int64) {
	if len(j.pieces) == 1 && j.pieces[0].f.Size > packLimit {
		f := j.pieces[0].f
		return "f:" + f.Path, f.Path, f.Size, f.cached
	}
	label = j.pieces[0].f.Path
	if n := len(j.pieces); n > 1 {
		label = fmt.Sprintf("%d files: %s …", n, label)
	}
	return fmt.Sprintf("p:%d", j.seq), label, j.size, 0
}

type putStats struct {
	uploaded, deduped, cachedPieces atomic.Int64
	bytesSent                       atomic.Int64
}

func (a *app) cmdPut(ctx context.Context, args []string) error {
	fs := pflag.NewFlagSet("put", pflag.ContinueOnError)
	var cf commonFlags
	addCommon(fs, &cf, 3)
	replicas := fs.Int("replicas", 2, "copies to ask the proxy for (config: replicas)")
	manifestOnly := fs.Bool("manifest-only", false, "print the manifest text instead of storing it and printing its locator")
	noResume := fs.Bool("no-resume", false, "ignore the resume cache of an earlier run (the new run is still cached)")
	noCache := fs.Bool("no-cache", false, "neither read nor write the resume cache")
	name := fs.String("name", "", "save the tree as a collection of this name through the proxy's Arvados API (arvados_api) and print its UUID, as arv-put does")
	if err := a.parse(fs, "put [flags] PATH...", putHelp, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErr("put needs at least one PATH (see keep help put)")
	}
	s, err := a.settings(fs, &cf)
	if err != nil {
		return err
	}
	if !fs.Changed("replicas") && s.Replicas > 0 {
		*replicas = s.Replicas
	}
	if *replicas < 1 || *replicas > 16 {
		return usageErr("--replicas must be between 1 and 16")
	}
	if *name != "" && *manifestOnly {
		return usageErr("--name saves a collection, --manifest-only prints the manifest: use one of them")
	}
	files, err := walkInputs(fs.Args(), a.warn)
	if err != nil {
		return err
	}
	tr := newTracker("put", a.renderer(s))
	client, err := a.client(s, tr)
	if err != nil {
		return err
	}
	// Resume cache.
	var keys []string
	for _, arg := range fs.Args() {
		k, err := inputKey(arg)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	cache, _ := openCache("", "", "", false, true) // disabled until opened below
	if !*noCache {
		dir, err := cacheDir(a.getenv)
		if err != nil {
			a.warn("no resume cache: " + err.Error())
		} else if cache, err = openCache(dir, cacheName(client.Proxy(), s.Token, keys), client.Proxy(), *noResume, false); err != nil {
			return err
		}
	}
	defer cache.Close()

	p := &putRun{a: a, s: s, client: client, tr: tr, cache: cache, replicas: *replicas, dedupe: map[blockKey]*dedupeEntry{}}
	if err := p.plan(ctx, files); err != nil {
		return err
	}
	start := time.Now()
	tr.Start(p.total, p.initial)
	for _, f := range p.files {
		if f.left.Load() == 0 {
			how := "cached"
			if f.Size == 0 {
				how = "stored"
			}
			tr.FileDone(f.Path, f.Size, how)
		}
	}
	if err := p.upload(ctx); err != nil {
		tr.Finish(false)
		stored := p.stats.uploaded.Load() + p.stats.deduped.Load()
		if !cache.off {
			return fmt.Errorf("%w (%d of %d blocks stored; run the same command again to resume)", err, stored, len(p.jobs))
		}
		return err
	}
	// The manifest.
	var mfiles []manifest.File
	for _, f := range p.files {
		mfiles = append(mfiles, manifest.File{Path: f.Path, Dir: f.Dir, Size: f.Size, Chunks: f.chunks})
	}
	m, err := manifest.FromFiles(mfiles)
	if err != nil {
		tr.Finish(false)
		return err
	}
	text := m.Format()
	result := map[string]any{"event": "result", "op": "put", "files": len(p.files), "bytes": p.total,
		"blocks_uploaded": p.stats.uploaded.Load(), "blocks_deduplicated": p.stats.deduped.Load(),
		"pieces_from_cache": p.stats.cachedPieces.Load(), "portable_data_hash": m.PortableDataHash()}
	if *manifestOnly {
		tr.Finish(true)
		if s.JSON {
			result["manifest"] = text
		} else {
			io.WriteString(a.stdout, text)
		}
	} else if *name != "" {
		rec, err := newCollections(s).save(ctx, text, *name)
		tr.Finish(err == nil)
		if err != nil {
			return fmt.Errorf("saving the collection: %w", err)
		}
		result["uuid"], result["portable_data_hash"] = rec.UUID, rec.PortableDataHash
		if !s.JSON {
			fmt.Fprintln(a.stdout, rec.UUID)
		}
	} else {
		if int64(len(text)) > blockSize {
			tr.Finish(false)
			return fmt.Errorf("the manifest is %d bytes, over the 64 MiB block limit: put fewer files at a time", len(text))
		}
		res, err := client.PutBlock(ctx, []byte(text), *replicas)
		tr.Finish(err == nil)
		if err != nil {
			return fmt.Errorf("storing the manifest: %w", err)
		}
		result["locator"] = res.Locator.String()
		result["replicas"] = res.Replicas
		if !s.JSON {
			fmt.Fprintln(a.stdout, res.Locator.String())
		}
	}
	el := time.Since(start)
	sent := p.stats.bytesSent.Load()
	result["seconds"] = el.Seconds()
	result["bytes_sent"] = sent
	result["bytes_per_second"] = int64(float64(sent) / max(el.Seconds(), 1e-9))
	if s.JSON {
		a.jsonOut(result)
	} else if a.tty && !s.Quiet {
		fmt.Fprintf(a.stderr, "keep put: %d files, %s; sent %s in %s (%s/s); %d blocks uploaded, %d deduplicated, %d pieces from the resume cache\n",
			len(p.files), humanBytes(p.total), humanBytes(sent), el.Round(100*time.Millisecond), humanBytes(int64(float64(sent)/max(el.Seconds(), 1e-9))),
			p.stats.uploaded.Load(), p.stats.deduped.Load(), p.stats.cachedPieces.Load())
	}
	return nil
}

type blockKey struct {
	h blockstore.Hash
	n int64
}

type dedupeEntry struct {
	done chan struct{}
	res  keepclient.PutResult
	err  error
}

// putRun is the state of one `keep put`.
type putRun struct {
	a        *app
	s        *settings
	client   *keepclient.Client
	tr       *tracker
	cache    *resumeCache
	replicas int

	files          []*upFile
	jobs           []*job
	total, initial int64
	stats          putStats

	mu        sync.Mutex
	dedupe    map[blockKey]*dedupeEntry
	cacheWarn sync.Once
}

// plan reads the resume cache, confirms near-expiry locators with HEAD,
// and cuts what is left into jobs: pieces of large files in blocks of
// their own, small files packed together.
func (p *putRun) plan(ctx context.Context, files []srcFile) error {
	type ref struct {
		f *upFile
		i int
		c cachedPiece
	}
	var toCheck []ref
	var usable []ref
	keep := map[string]bool{}
	now := time.Now()
	for _, sf := range files {
		f := &upFile{srcFile: sf}
		p.files = append(p.files, f)
		p.total += f.Size
		if f.Dir || f.Size == 0 {
			continue
		}
		keep[f.Abs] = true
		f.chunks = make([]manifest.Chunk, f.pieces())
		for i, c := range p.cache.entry(f.Abs, f.Size, f.Mtime) {
			loc, err := blockstore.ParseLocator(c.Locator)
			ok := err == nil && i >= 0 && i < f.pieces() && c.Len == f.pieceLen(i) && loc.HasSize() &&
				c.Offset >= 0 && c.Offset+c.Len <= loc.Size && c.Replicas >= p.replicas
			exp, signed := keepclient.SignatureExpiry(loc)
			if ok && signed && exp.Before(now) {
				ok = false
			}
			if !ok {
				p.cache.forget(f.Abs, i)
				continue
			}
			r := ref{f, i, c}
			if signed && exp.Before(now.Add(recheckWindow)) {
				toCheck = append(toCheck, r)
			} else {
				usable = append(usable, r)
			}
		}
	}
	p.cache.retain(keep)
	// One more HEAD, for the earliest-expiring usable locator, checks that
	// the cache fits this proxy and token at all (as arv-put does).
	sample := -1
	var earliest time.Time
	for i, r := range usable {
		loc, _ := blockstore.ParseLocator(r.c.Locator)
		if exp, ok := keepclient.SignatureExpiry(loc); ok && (sample < 0 || exp.Before(earliest)) {
			sample, earliest = i, exp
		}
	}
	if sample >= 0 {
		loc, _ := blockstore.ParseLocator(usable[sample].c.Locator)
		if _, err := p.client.Head(ctx, loc); err != nil {
			switch blockstore.KindOf(err) {
			case blockstore.KindNotFound, blockstore.KindUnprocessable, blockstore.KindExpiredSignature, blockstore.KindInvalidSignature:
				p.a.warn("the resume cache does not match what the proxy holds (" + err.Error() + "); uploading everything again")
				for _, r := range append(usable, toCheck...) {
					p.cache.forget(r.f.Abs, r.i)
				}
				usable, toCheck = nil, nil
			default:
				return fmt.Errorf("checking the resume cache: %w", err)
			}
		}
	}
	if len(toCheck) > 0 {
		ok := make([]bool, len(toCheck))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(p.s.Threads)
		for i, r := range toCheck {
			g.Go(func() error {
				loc, _ := blockstore.ParseLocator(r.c.Locator)
				_, err := p.client.Head(gctx, loc)
				switch {
				case err == nil:
					ok[i] = true
				case blockstore.KindOf(err) == blockstore.KindForbidden || blockstore.KindOf(err) == blockstore.KindNoToken || gctx.Err() != nil:
					return err
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return fmt.Errorf("checking the resume cache: %w", err)
		}
		for i, r := range toCheck {
			if ok[i] {
				usable = append(usable, r)
			} else {
				p.cache.forget(r.f.Abs, r.i)
			}
		}
	}
	for _, r := range usable {
		loc, _ := blockstore.ParseLocator(r.c.Locator)
		r.f.chunks[r.i] = manifest.Chunk{Locator: loc, Offset: r.c.Offset, Len: r.c.Len}
		r.f.cached += r.c.Len
		p.initial += r.c.Len
		p.stats.cachedPieces.Add(1)
		p.dedupe[blockKey{loc.Hash, loc.Size}] = doneEntry(keepclient.PutResult{Locator: loc, Replicas: r.c.Replicas})
	}
	// Jobs, in file order.
	var pack *job
	flush := func() {
		if pack != nil {
			p.jobs = append(p.jobs, pack)
			pack = nil
		}
	}
	for _, f := range p.files {
		if f.Dir || f.Size == 0 {
			continue
		}
		for i := range f.chunks {
			if f.chunks[i].Len > 0 {
				continue
			}
			f.left.Add(1)
			n := f.pieceLen(i)
			if f.Size > packLimit {
				p.jobs = append(p.jobs, &job{seq: len(p.jobs), size: n, pieces: []piece{{f: f, index: i, fileOff: int64(i) * blockSize, n: n}}})
				continue
			}
			if pack != nil && pack.size+n > blockSize {
				flush()
			}
			if pack == nil {
				pack = &job{seq: len(p.jobs)}
			}
			pack.pieces = append(pack.pieces, piece{f: f, index: i, blockOff: pack.size, n: n})
			pack.size += n
		}
	}
	flush()
	for i, j := range p.jobs {
		j.seq = i
	}
	return nil
}

func doneEntry(res keepclient.PutResult) *dedupeEntry {
	e := &dedupeEntry{done: make(chan struct{}), res: res}
	close(e.done)
	return e
}

type readyJob struct {
	*job
	buf *[]byte
}

// upload runs the jobs: one goroutine reads blocks into a pool of
// threads+1 buffers, threads goroutines hash and store them.
func (p *putRun) upload(ctx context.Context) error {
	if len(p.jobs) == 0 {
		return nil
	}
	threads := p.s.Threads
	pool := make(chan *[]byte, threads+1)
	for range threads + 1 {
		pool <- new([]byte)
	}
	ready := make(chan readyJob)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(ready)
		for _, j := range p.jobs {
			var buf *[]byte
			select {
			case buf = <-pool:
			case <-gctx.Done():
				return gctx.Err()
			}
			if int64(cap(*buf)) < j.size {
				c := j.size
				if c > 1<<20 {
					c = blockSize // big buffers are reused for any block
				}
				*buf = make([]byte, c)
			}
			*buf = (*buf)[:j.size]
			if err := readJob(j, *buf); err != nil {
				return err
			}
			select {
			case ready <- readyJob{j, buf}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	for range threads {
		g.Go(func() error {
			for rj := range ready {
				err := p.store(gctx, rj.job, *rj.buf)
				pool <- rj.buf
				if err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// readJob fills data with the job's pieces and checks that no file
// changed while it was read.
func readJob(j *job, data []byte) error {
	for _, pc := range j.pieces {
		if err := readPiece(pc, data[pc.blockOff:pc.blockOff+pc.n]); err != nil {
			return err
		}
	}
	return nil
}

func readPiece(pc piece, dst []byte) error {
	fh, err := os.Open(pc.f.Abs)
	if err != nil {
		return fmt.Errorf("reading %s: %w", pc.f.Abs, unwrapPathErr(err))
	}
	defer fh.Close()
	if _, err := io.ReadFull(io.NewSectionReader(fh, pc.fileOff, pc.n), dst); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return usageErr("%s shrank while it was being read; run keep put again once it is stable", pc.f.Abs)
		}
		return fmt.Errorf("reading %s: %w", pc.f.Abs, unwrapPathErr(err))
	}
	fi, err := fh.Stat()
	if err != nil {
		return fmt.Errorf("reading %s: %w", pc.f.Abs, err)
	}
	if fi.Size() != pc.f.Size || fi.ModTime().UnixNano() != pc.f.Mtime {
		return usageErr("%s changed while it was being read; run keep put again once it is stable", pc.f.Abs)
	}
	return nil
}

// store hashes one block, stores it unless an identical block was stored
// (or is being stored) already, and records where its pieces went.
func (p *putRun) store(ctx context.Context, j *job, data []byte) error {
	key, label, size, done := j.item()
	p.tr.Item(key, label, size, done)
	h := blockstore.HashOf(data)
	bk := blockKey{h, int64(len(data))}
	p.mu.Lock()
	e, dup := p.dedupe[bk]
	if !dup {
		e = &dedupeEntry{done: make(chan struct{})}
		p.dedupe[bk] = e
	}
	p.mu.Unlock()
	if dup {
		select {
		case <-e.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if e.err != nil {
			return e.err
		}
		p.stats.deduped.Add(1)
		p.tr.Add(key, int64(len(data)))
	} else {
		e.res, e.err = p.client.PutReader(ctx, h, int64(len(data)), bytes.NewReader(data), p.replicas,
			keepclient.WithProgress(func(n int64) { p.tr.Add(key, n) }))
		close(e.done)
		if e.err != nil {
			return e.err
		}
		if e.res.Replicas < p.replicas {
			p.tr.Log(fmt.Sprintf("keep put: warning: block %s stored with %d of %d replicas", h, e.res.Replicas, p.replicas))
		}
		p.stats.uploaded.Add(1)
		p.stats.bytesSent.Add(int64(len(data)))
	}
	loc := e.res.Locator
	for _, pc := range j.pieces {
		pc.f.chunks[pc.index] = manifest.Chunk{Locator: loc, Offset: pc.blockOff, Len: pc.n}
		p.cache.record(pc.f.Abs, pc.index, cachedPiece{Locator: loc.String(), Offset: pc.blockOff, Len: pc.n, Replicas: e.res.Replicas})
		if pc.f.left.Add(-1) == 0 {
			p.tr.FileDone(pc.f.Path, pc.f.Size, "uploaded")
			if pc.f.Size > packLimit {
				p.tr.ItemDone("f:" + pc.f.Path)
			}
		}
	}
	if len(j.pieces) != 1 || j.pieces[0].f.Size <= packLimit {
		p.tr.ItemDone(key)
	}
	if err := p.cache.checkpoint(); err != nil {
		p.cacheWarn.Do(func() { p.tr.Log("keep put: warning: " + err.Error() + " (the upload goes on, but cannot be resumed)") })
	}
	return nil
}
