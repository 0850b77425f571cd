package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// tracker counts transferred bytes, in total and for the items (files,
// or packs of small files) in flight. Transfer code only touches atomics
// and a short lock; a renderer samples the tracker on a timer.
type tracker struct {
	op        string
	total     int64
	done      atomic.Int64
	initial   int64 // already done before the transfer started (resume)
	started   time.Time
	mu        sync.Mutex
	items     map[string]*item
	seq       int
	filesDone atomic.Int64
	r         renderer
	stop      chan struct{}
	stopped   chan struct{}
}

type item struct {
	key, label string
	size       int64
	done       atomic.Int64
	finished   atomic.Bool
	seq        int
}

// renderer shows a tracker: a terminal bar, JSON lines, or nothing.
type renderer interface {
	tick(t *tracker)
	// log prints one line of text (warnings, retries) without breaking
	// the display.
	log(line string)
	// event emits a JSON object (JSON mode only).
	event(v map[string]any)
	finish(t *tracker, ok bool)
}

const tickEvery = 150 * time.Millisecond

func newTracker(op string, r renderer) *tracker {
	return &tracker{op: op, r: r, items: map[string]*item{}}
}

// Start begins timing a transfer of total bytes of which initial are
// already done.
func (t *tracker) Start(total, initial int64) {
	t.total, t.initial = total, initial
	t.done.Store(initial)
	t.started = time.Now()
	t.stop, t.stopped = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(t.stopped)
		every := tickEvery
		if _, ok := t.r.(*jsonRenderer); ok {
			every = time.Second
		}
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-tk.C:
				t.r.tick(t)
			case <-t.stop:
				return
			}
		}
	}()
}

// Item registers (once) a file or pack whose bytes are being moved.
func (t *tracker) Item(key, label string, size, done int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.items[key]; ok {
		return
	}
	t.seq++
	it := &item{key: key, label: label, size: size, seq: t.seq}
	it.done.Store(done)
	t.items[key] = it
}

// Add counts n bytes (negative: taken back before a retry) for key ("":
// the total only).
func (t *tracker) Add(key string, n int64) {
	t.done.Add(n)
	if key == "" {
		return
	}
	t.mu.Lock()
	it := t.items[key]
	t.mu.Unlock()
	if it != nil {
		it.done.Add(n)
	}
}

// ItemDone marks key complete; it leaves the display.
func (t *tracker) ItemDone(key string) {
	t.mu.Lock()
	it := t.items[key]
	t.mu.Unlock()
	if it != nil {
		it.finished.Store(true)
	}
}

// FileDone counts a finished file and reports it in JSON mode.
func (t *tracker) FileDone(path string, size int64, how string) {
	t.filesDone.Add(1)
	t.r.event(map[string]any{"event": "file", "op": t.op, "path": path, "size": size, "status": how})
}

// active returns the items in flight (and forgets finished ones after the
// renderer has seen them once more).
func (t *tracker) active() []*item {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*item, 0, len(t.items))
	for k, it := range t.items {
		out = append(out, it)
		if it.finished.Load() {
			delete(t.items, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// Log prints a line through the renderer.
func (t *tracker) Log(line string) { t.r.log(line) }

// Finish stops the display.
func (t *tracker) Finish(ok bool) {
	if t.stop != nil {
		close(t.stop)
		<-t.stopped
		t.stop = nil
	}
	t.r.finish(t, ok)
}

// rate is the average speed since Start, over the bytes moved in this run.
func (t *tracker) rate() float64 {
	el := time.Since(t.started).Seconds()
	if el <= 0 {
		return 0
	}
	return float64(t.done.Load()-t.initial) / el
}

// nopRenderer shows nothing; log lines still go to stderr.
type nopRenderer struct{ w io.Writer }

func (n nopRenderer) tick(t *tracker)       { t.active() }
func (n nopRenderer) log(line string)       { fmt.Fprintln(n.w, line) }
func (n nopRenderer) event(map[string]any)  {}
func (n nopRenderer) finish(*tracker, bool) {}

// jsonRenderer writes one JSON object per line to stdout: progress once a
// second, a line per finished file, and the caller's result line.
type jsonRenderer struct {
	mu     sync.Mutex
	w      io.Writer
	stderr io.Writer
}

func (j *jsonRenderer) event(v map[string]any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, _ := json.Marshal(v)
	j.w.Write(append(b, '\n'))
}

func (j *jsonRenderer) tick(t *tracker) {
	t.active()
	done := t.done.Load()
	rate := t.rate()
	ev := map[string]any{"event": "progress", "op": t.op, "bytes": done, "total": t.total,
		"files_done": t.filesDone.Load(), "bytes_per_second": int64(rate)}
	if rate > 0 {
		ev["eta_seconds"] = int64(float64(t.total-done) / rate)
	}
	j.event(ev)
}

func (j *jsonRenderer) log(line string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	fmt.Fprintln(j.stderr, line)
}

func (j *jsonRenderer) finish(t *tracker, ok bool) {
	if !t.started.IsZero() {
		j.tick(t)
	}
}

// barRenderer draws with mpb on a terminal: one bar for the whole
// transfer (bytes, percentage, rate over the last few seconds, ETA) and one
// per file in flight.
type barRenderer struct {
	p       *mpb.Progress
	w       io.Writer
	total   *mpb.Bar
	bars    map[string]*mpb.Bar
	mu      sync.Mutex
	samples []sample     // recent (time, bytes) pairs for the rate
	rate    atomic.Value // string shown by the rate decorator
	eta     atomic.Value // string shown by the ETA decorator
}

type sample struct {
	t    time.Time
	done int64
}

// rateWindow is how far back the displayed rate looks.
const rateWindow = 3 * time.Second

func newBarRenderer(w io.Writer) *barRenderer {
	b := &barRenderer{w: w, bars: map[string]*mpb.Bar{}}
	b.rate.Store("")
	b.eta.Store("")
	return b
}

func (b *barRenderer) start(t *tracker) {
	b.p = mpb.New(mpb.WithOutput(b.w), mpb.WithWidth(40), mpb.WithRefreshRate(tickEvery))
	b.total = b.p.AddBar(t.total,
		mpb.BarPriority(1<<30), // keep the total at the bottom
		mpb.PrependDecorators(
			decor.Name(t.op+" ", decor.WCSyncSpaceR),
			decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace),
		),
		mpb.AppendDecorators(
			decor.Percentage(decor.WCSyncSpace),
			decor.Any(func(decor.Statistics) string { return b.rate.Load().(string) }, decor.WCSyncSpace),
			decor.Any(func(decor.Statistics) string { return b.eta.Load().(string) }, decor.WCSyncSpace),
		),
	)
	b.total.SetCurrent(t.initial)
}

// measure updates the rate and ETA texts from a sliding window.
func (b *barRenderer) measure(t *tracker, now time.Time, done int64) {
	b.samples = append(b.samples, sample{now, done})
	for len(b.samples) > 2 && now.Sub(b.samples[1].t) >= rateWindow {
		b.samples = b.samples[1:]
	}
	first := b.samples[0]
	el := now.Sub(first.t).Seconds()
	if el < 0.5 {
		return
	}
	rate := float64(done-first.done) / el
	b.rate.Store(humanBytes(int64(rate)) + "/s")
	switch left := t.total - done; {
	case left <= 0:
		b.eta.Store("")
	case rate < 1:
		b.eta.Store("ETA --")
	default:
		b.eta.Store("ETA " + time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second).String())
	}
}

func (b *barRenderer) tick(t *tracker) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p == nil {
		b.start(t)
	}
	now := time.Now()
	done := t.done.Load()
	b.measure(t, now, done)
	b.total.SetCurrent(min(done, max(t.total-1, 0))) // completion is finish's job
	for _, it := range t.active() {
		bar := b.bars[it.key]
		if bar == nil && !it.finished.Load() {
			bar = b.p.AddBar(it.size,
				mpb.BarRemoveOnComplete(),
				mpb.BarPriority(it.seq),
				mpb.PrependDecorators(decor.Name(shorten(it.label, 40), decor.WCSyncSpaceR)),
				mpb.AppendDecorators(decor.Counters(decor.SizeB1024(0), "% .1f / % .1f", decor.WCSyncSpace)),
			)
			b.bars[it.key] = bar
		}
		if bar == nil {
			continue
		}
		if it.finished.Load() {
			bar.SetCurrent(it.size) // completes it, and it is removed
			delete(b.bars, it.key)
			continue
		}
		bar.SetCurrent(min(it.done.Load(), it.size-1))
	}
}

func (b *barRenderer) log(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.p != nil {
		fmt.Fprintln(b.p, line)
		return
	}
	fmt.Fprintln(b.w, line)
}

func (b *barRenderer) event(map[string]any) {}

func (b *barRenderer) finish(t *tracker, ok bool) {
	b.mu.Lock()
	if b.p == nil {
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	b.tick(t) // last counts
	b.mu.Lock()
	for k, bar := range b.bars {
		bar.Abort(true)
		delete(b.bars, k)
	}
	// A bar made with a positive total completes only when its count
	// reaches the total (SetTotal is then ignored).
	switch {
	case ok && t.total > 0:
		b.total.SetCurrent(t.total)
	case ok:
		b.total.SetTotal(-1, true)
	default:
		b.total.Abort(false)
	}
	p := b.p
	b.mu.Unlock()
	done := make(chan struct{})
	go func() { p.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second): // never hang on the display
		p.Shutdown()
		<-done
	}
}

// shorten keeps the end of a long name (the file name matters most).
func shorten(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return "…" + string(r[len(r)-n+1:])
}

// humanBytes formats a byte count in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
