// Package node is the keepstore core: a set of mounts (volumes with their
// storage classes, replication and priority) and the block operations of
// KEEP-PROTOCOL §5 on them. Its HTTP API is package nodehttp.
//
// The core methods (Put, Open, Touch, Trash, Untrash, Index, SetTrashList,
// the checksum scan) know nothing of HTTP; every error they return carries
// a blockstore.Kind, which nodehttp maps to a status in one place.
//
// Design decisions, where the protocol leaves a choice or where we differ
// from Arvados on purpose:
//   - Streaming. A PUT body streams straight into one volume's Put (which
//     verifies it and makes the block visible, with its chunk checksums,
//     only when it matches): by MD5, or, when keepproxy sent it with the
//     write token and the chunk-checksum trailer (it hashed the MD5
//     itself), by the CRC32C of every chunk (blockstore.Vouched), so a
//     replicated PUT is MD5-hashed once in the cluster. A second copy, for
//     a second requested storage class, is copied from the first volume,
//     never from RAM. Every request that copies data holds one copy
//     buffer and one checksum chunk of the memory budget; a request that
//     cannot get them within BudgetWait is answered 503 + Retry-After.
//   - GET reads each copy once: through blockstore.ChunkReader, which
//     checks every chunk's CRC32C right before any byte of it is sent, so
//     a damaged chunk ends the body short (the copy is counted and
//     remembered, and the next mount continues at that offset) and never
//     reaches the client; the first chunk is checked before the headers,
//     so damage there makes the next copy serve. Such a response carries
//     keepwire.DataVerified, and keepproxy does not hash it again. A copy
//     written before checksums existed is, on a VerifyFirst mount,
//     MD5-checked whole before its first byte and gains the checksums of
//     that pass (which then check the bytes actually sent); elsewhere the
//     whole-block MD5 withholds the last chunk (NewVerifyingWriter) and a
//     clean whole read gives it checksums. StartChecksumScan does the same
//     for a whole volume in the background.
//   - An existing block is not rewritten by PUT: the body is still read and
//     verified (a client must prove it has the data before it gets a signed
//     locator), then the existing copies are touched.
//   - A read fails over to the next mount when a volume errors, also in
//     the middle of a body (it resumes at the same offset); only
//     chunk-checked copies may continue a stream that is not hashed whole.
//     A copy found corrupt is remembered and tried last afterwards, so a
//     client's retry is served from a good copy, and a PUT rewrites it.
//   - HEAD is cheap and exact: it Stats the block on the mounts (size and
//     existence) without reading it, so it does not detect corruption.
//   - Range reads (an extension: Arvados has none) check only the chunks
//     they touch. A range of an old copy without checksums on a read-only
//     mount (or a mount that is not VerifyFirst) is delivered unverified,
//     without keepwire.DataVerified.
//   - The empty block is always served (after the signature check) without
//     touching the volumes.
package node

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/every"
)

// Mount is one volume attached to the node.
type Mount struct {
	// UUID is the mount's identity (<cluster>-nyw5e-<15 chars>); its last
	// 15 characters feed the mount order (KEEP-PROTOCOL §8.3).
	UUID   string
	Volume blockstore.Volume
	// ReadOnly mounts are read and indexed, never written, touched,
	// trashed or untrashed.
	ReadOnly bool
	// Replication is the number of copies the volume itself keeps (≥ 1).
	Replication int
	// Classes are the storage classes the mount serves; empty: "default".
	Classes []string
	// Priority: higher-priority mounts are tried first.
	Priority int
	// VerifyFirst: a copy written before chunk checksums existed is read
	// once whole and MD5-checked before the first byte of a GET is sent,
	// and gains the checksums computed in that pass, which then check
	// every chunk sent; a corrupt copy is skipped (the next mount serves,
	// or the client gets 502 before any byte) instead of being cut short
	// after a 200. Copies with checksums never need it. Cheap for local
	// disks (the page cache serves the second read), so keepstore turns
	// it on for Directory volumes; S3 volumes verify while streaming
	// instead.
	VerifyFirst bool
}

// Options configure a Node. The policies of its HTTP API (tokens, allowed
// networks, trusted proxies, the body idle timeout) are nodehttp.Options;
// MaxConcurrentRequests is applied by AdmitRequest.
type Options struct {
	Mounts []Mount
	// Signer signs the locators PUT returns (when the request has a token)
	// and checks signatures. Nil: locators are returned unsigned.
	Signer *blockstore.Signer
	// RequireSignatures: GET and HEAD need a valid signature (needs Signer).
	RequireSignatures bool
	// SignatureTTL: trash-list items younger than this are skipped.
	SignatureTTL time.Duration
	// TrashEnabled: DELETE and PUT /trash work (405 otherwise).
	TrashEnabled bool
	// TrashCheckInterval: how often Run empties each mount's trash
	// (0: never).
	TrashCheckInterval time.Duration
	// TrashConcurrency: trash-list workers (default 4).
	TrashConcurrency int
	// MemoryBudget caps the buffers of all requests (default 256 MiB); each
	// block transfer takes BufferSize + blockstore.ChunkSize.
	MemoryBudget int64
	// BufferSize is one request's copy buffer (default 1 MiB).
	BufferSize int
	// BudgetWait is how long a request waits for its buffer or a request
	// slot before 503 + Retry-After (default 2s).
	BudgetWait time.Duration
	// MaxConcurrentRequests caps the requests served at once, health,
	// metrics and status excepted (0: no cap).
	MaxConcurrentRequests int
	// Logger (default: discard) and Registry for the node's metrics
	// (default: a private one).
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Version is reported by /status.json.
	Version string
}

// Node is a keepstore: mounts plus the block API. Create it with New,
// start its background work with Run, serve it with nodehttp.New.
type Node struct {
	opt      Options
	mounts   []*mount // sorted by UUID
	uuids    []string // mount UUIDs, same order
	priority []int
	byUUID   map[string]*mount
	log      *slog.Logger
	metrics  *metrics
	budget   *budget
	bad      badCopies
	trashq   trashQueue
	scan     scanner
	slots    *semaphore.Weighted // request slots; nil: no cap

	bufs       sync.Pool // *[]byte of BufferSize
	bufReaders sync.Pool // *bufio.Reader of BufferSize
}

// mount is a Mount with its instrumented volume.
type mount struct {
	Mount
	vol     blockstore.Volume
	classes map[string]bool
}

func (m *mount) covers(classes []string) bool {
	for _, c := range classes {
		if m.classes[c] {
			return true
		}
	}
	return false
}

// New checks the options and builds a node. Metrics are registered on
// opt.Registry.
func New(opt Options) (*Node, error) {
	if opt.RequireSignatures && opt.Signer == nil {
		return nil, errors.New("node: RequireSignatures needs a Signer")
	}
	if opt.TrashConcurrency <= 0 {
		opt.TrashConcurrency = 4
	}
	if opt.MemoryBudget <= 0 {
		opt.MemoryBudget = 256 << 20
	}
	if opt.BufferSize <= 0 {
		opt.BufferSize = 1 << 20
	}
	if int64(opt.BufferSize)+blockstore.ChunkSize > opt.MemoryBudget {
		return nil, errors.New("node: MemoryBudget is smaller than one copy buffer and one checksum chunk")
	}
	if opt.BudgetWait <= 0 {
		opt.BudgetWait = 2 * time.Second
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.DiscardHandler)
	}
	if opt.Registry == nil {
		opt.Registry = prometheus.NewRegistry()
	}
	n := &Node{opt: opt, log: opt.Logger, byUUID: map[string]*mount{}}
	m, err := newMetrics(opt.Registry)
	if err != nil {
		return nil, err
	}
	n.metrics = m
	n.budget = newBudget(opt.MemoryBudget, opt.BudgetWait, m)
	for _, mt := range opt.Mounts {
		if mt.Volume == nil || mt.UUID == "" {
			return nil, errors.New("node: every mount needs a UUID and a Volume")
		}
		if _, dup := n.byUUID[mt.UUID]; dup {
			return nil, errors.New("node: duplicate mount UUID " + mt.UUID)
		}
		if mt.Replication < 1 {
			mt.Replication = 1
		}
		if len(mt.Classes) == 0 {
			mt.Classes = []string{"default"}
		}
		v := mt.Volume
		if mt.ReadOnly {
			v = blockstore.ReadOnly(v)
		}
		mm := &mount{Mount: mt, vol: instrument(v, mt.UUID, m), classes: map[string]bool{}}
		for _, c := range mt.Classes {
			mm.classes[c] = true
		}
		n.mounts = append(n.mounts, mm)
		n.byUUID[mt.UUID] = mm
	}
	sort.Slice(n.mounts, func(i, j int) bool { return n.mounts[i].UUID < n.mounts[j].UUID })
	for _, mm := range n.mounts {
		n.uuids = append(n.uuids, mm.UUID)
		n.priority = append(n.priority, mm.Priority)
	}
	n.trashq.cond = sync.NewCond(&n.trashq.mu)
	if opt.MaxConcurrentRequests > 0 {
		n.slots = semaphore.NewWeighted(int64(opt.MaxConcurrentRequests))
	}
	return n, nil
}

// Options returns the options the node runs with, defaults filled in
// (Logger, Registry, BudgetWait, ...). The HTTP layer takes its policies
// from them: tokens, allowed networks, trusted proxies, body idle timeout.
// Their slices are the node's own: do not modify them.
func (n *Node) Options() Options { return n.opt }

// AdmitRequest takes one of the node's MaxConcurrentRequests request
// slots (shared by every handler serving the node), waiting at most
// BudgetWait for one; then it fails with KindOverloaded (503 +
// Retry-After), counted as overload_rejections_total{reason="requests"}.
// Without a cap it always succeeds. release gives the slot back; call it
// exactly once.
func (n *Node) AdmitRequest(ctx context.Context) (release func(), err error) {
	if n.slots == nil {
		return func() {}, nil
	}
	if !n.slots.TryAcquire(1) {
		c, cancel := context.WithTimeout(ctx, n.opt.BudgetWait)
		err := n.slots.Acquire(c, 1)
		cancel()
		if err != nil {
			n.metrics.overloaded.WithLabelValues("requests").Inc()
			return nil, blockstore.Errorf(blockstore.KindOverloaded, "server busy: %d requests in progress; retry later", n.opt.MaxConcurrentRequests)
		}
	}
	return func() { n.slots.Release(1) }, nil
}

// requestWeight is what one block transfer takes from the memory budget:
// a copy buffer, and a checksum chunk (blockstore.ChunkReader on GET, the
// volumes' buffers on PUT).
func (n *Node) requestWeight() int64 { return int64(n.opt.BufferSize) + blockstore.ChunkSize }

// order returns the mounts in mount order for h (§8.3), writable ones
// only if writable is set; copies known to be corrupt go last.
func (n *Node) order(h blockstore.Hash, writable bool) []*mount {
	idx := blockstore.MountOrder(h, n.uuids, n.priority)
	out := make([]*mount, 0, len(idx))
	var bad []*mount
	for _, i := range idx {
		m := n.mounts[i]
		if writable && m.ReadOnly {
			continue
		}
		if n.bad.has(m.UUID, h) {
			bad = append(bad, m)
			continue
		}
		out = append(out, m)
	}
	return append(out, bad...)
}

// writableByUUID returns the writable mounts in UUID order.
func (n *Node) writableByUUID() []*mount {
	var out []*mount
	for _, m := range n.mounts {
		if !m.ReadOnly {
			out = append(out, m)
		}
	}
	return out
}

// SignLocator returns loc signed for token when the node has a signer and
// token is not empty, else loc as is, in canonical form.
func (n *Node) SignLocator(loc blockstore.Locator, token string) string {
	if n.opt.Signer == nil || token == "" {
		return loc.String()
	}
	return n.opt.Signer.Sign(loc, token).String()
}

// Run does the node's background work until ctx is done: one trash
// sweeper per writable mount (EmptyTrash every TrashCheckInterval) and the
// trash-list workers. It returns when they have all stopped.
func (n *Node) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	if n.opt.TrashCheckInterval > 0 {
		for _, m := range n.writableByUUID() {
			wg.Go(func() { n.sweep(ctx, m) })
		}
	}
	for i := 0; i < n.opt.TrashConcurrency; i++ {
		wg.Go(func() { n.trashWorker(ctx) })
	}
	<-ctx.Done()
	n.trashq.mu.Lock()
	n.trashq.stopped = true
	n.trashq.cond.Broadcast()
	n.trashq.mu.Unlock()
	n.StopChecksumScan()
	wg.Wait()
	return nil
}

func (n *Node) sweep(ctx context.Context, m *mount) {
	every.Do(ctx, n.opt.TrashCheckInterval, func(ctx context.Context) {
		start := time.Now()
		if err := m.vol.EmptyTrash(ctx); err != nil && ctx.Err() == nil {
			n.log.Warn("emptying trash failed", "mount", m.UUID, "error", err.Error())
		} else {
			n.log.Debug("emptied trash", "mount", m.UUID, "seconds", time.Since(start).Seconds())
		}
	})
}

// badCopies remembers (mount, hash) pairs found corrupt on read, so later
// reads try other copies first and PUT rewrites them. Bounded: it forgets
// everything when it grows past badCopiesMax.
type badCopies struct {
	mu sync.Mutex
	m  map[badKey]bool
}

type badKey struct {
	uuid string
	h    blockstore.Hash
}

const badCopiesMax = 4096

func (b *badCopies) add(uuid string, h blockstore.Hash) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.m == nil || len(b.m) >= badCopiesMax {
		b.m = map[badKey]bool{}
	}
	b.m[badKey{uuid, h}] = true
}

func (b *badCopies) has(uuid string, h blockstore.Hash) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[badKey{uuid, h}]
}

func (b *badCopies) clear(uuid string, h blockstore.Hash) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, badKey{uuid, h})
}

// MountInfo is one entry of GET /mounts (KEEP-PROTOCOL §5.6).
type MountInfo struct {
	UUID           string          `json:"uuid"`
	DeviceID       string          `json:"device_id"`
	AllowWrite     bool            `json:"allow_write"`
	AllowTrash     bool            `json:"allow_trash"`
	Replication    int             `json:"replication"`
	StorageClasses map[string]bool `json:"storage_classes"`
}

// Mounts lists the mounts in UUID order.
func (n *Node) Mounts() []MountInfo {
	out := make([]MountInfo, 0, len(n.mounts))
	for _, m := range n.mounts {
		sc := map[string]bool{}
		for _, c := range m.Classes {
			sc[c] = true
		}
		out = append(out, MountInfo{UUID: m.UUID, DeviceID: m.Volume.DeviceID(), AllowWrite: !m.ReadOnly,
			AllowTrash: !m.ReadOnly, Replication: m.Replication, StorageClasses: sc})
	}
	return out
}

// Status is the body of GET /status.json.
type Status struct {
	Version      string         `json:"version"`
	Volumes      []VolumeStatus `json:"volumes"`
	MemoryBudget BudgetStatus   `json:"memory_budget"`
	TrashQueue   QueueStatus    `json:"trash_queue"`
}

// VolumeStatus describes one mount in Status.
type VolumeStatus struct {
	UUID           string   `json:"uuid"`
	DeviceID       string   `json:"device_id"`
	ReadOnly       bool     `json:"read_only"`
	Replication    int      `json:"replication"`
	StorageClasses []string `json:"storage_classes"`
	Priority       int      `json:"priority"`
}

// BudgetStatus is the memory budget's use, in bytes.
type BudgetStatus struct {
	Limit int64 `json:"limit"`
	InUse int64 `json:"in_use"`
}

// QueueStatus is the trash list's progress.
type QueueStatus struct {
	Queued     int `json:"queued"`
	InProgress int `json:"in_progress"`
}

// Status reports the node's state.
func (n *Node) Status() Status {
	s := Status{Version: n.opt.Version, MemoryBudget: BudgetStatus{Limit: n.budget.limit, InUse: n.budget.inUse()}}
	for _, m := range n.mounts {
		s.Volumes = append(s.Volumes, VolumeStatus{UUID: m.UUID, DeviceID: m.Volume.DeviceID(), ReadOnly: m.ReadOnly,
			Replication: m.Replication, StorageClasses: slices.Clone(m.Classes), Priority: m.Priority})
	}
	n.trashq.mu.Lock()
	s.TrashQueue = QueueStatus{Queued: len(n.trashq.items), InProgress: n.trashq.inProgress}
	n.trashq.mu.Unlock()
	return s
}

// Touch sets the mtime of the block to now on the first writable mount,
// in UUID order, that has it (KEEP-PROTOCOL §5.8). NotFound if none has it.
func (n *Node) Touch(ctx context.Context, h blockstore.Hash) error {
	var firstErr error
	for _, m := range n.writableByUUID() {
		err := m.vol.Touch(ctx, h)
		if err == nil {
			return nil
		}
		if !blockstore.Is(err, blockstore.KindNotFound) && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return notFound(h)
}

// Trash moves the block to the trash on every writable mount (a copy
// younger than the volumes' MinAge is silently kept). NotFound if no
// mount had it; a backend error wins over successes.
func (n *Node) Trash(ctx context.Context, h blockstore.Hash) error {
	if !n.opt.TrashEnabled {
		return blockstore.Errorf(blockstore.KindMethodNotAllowed, "method not allowed: trash is disabled on this keepstore")
	}
	found := false
	var firstErr error
	for _, m := range n.writableByUUID() {
		err := m.vol.Trash(ctx, h)
		switch {
		case err == nil:
			found = true
		case blockstore.Is(err, blockstore.KindNotFound):
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return firstErr
	}
	if !found {
		return notFound(h)
	}
	return nil
}

// Untrash restores the block on every writable mount that has it in the
// trash. NotFound if none had it; an error only if no mount succeeded.
func (n *Node) Untrash(ctx context.Context, h blockstore.Hash) error {
	var firstErr error
	ok := false
	for _, m := range n.writableByUUID() {
		err := m.vol.Untrash(ctx, h)
		switch {
		case err == nil:
			ok = true
		case blockstore.Is(err, blockstore.KindNotFound):
		case firstErr == nil:
			firstErr = err
		}
	}
	if ok {
		return nil
	}
	if firstErr != nil {
		return firstErr
	}
	return blockstore.Errorf(blockstore.KindNotFound, "block %s is not in the trash", h)
}

// Index calls fn for every stored copy whose hash starts with prefix (0–32
// lowercase hex), on the mount mountUUID or, when it is "", on every mount
// in UUID order. An unknown mount is NotFound; a bad prefix BadRequest.
func (n *Node) Index(ctx context.Context, mountUUID, prefix string, fn func(blockstore.BlockInfo) error) error {
	if !blockstore.IsHexPrefix(prefix) {
		return blockstore.Errorf(blockstore.KindBadRequest, "invalid prefix %q: want 0 to 32 lowercase hex digits", truncate(prefix, 40))
	}
	mounts := n.mounts
	if mountUUID != "" {
		m, ok := n.byUUID[mountUUID]
		if !ok {
			return blockstore.Errorf(blockstore.KindNotFound, "no mount with uuid %q", truncate(mountUUID, 40))
		}
		mounts = []*mount{m}
	}
	for _, m := range mounts {
		if err := m.vol.Index(ctx, prefix, fn); err != nil {
			return err
		}
	}
	return nil
}

func notFound(h blockstore.Hash) error {
	return blockstore.Errorf(blockstore.KindNotFound, "block %s not found", h)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// trackedReader records what happened to a request body: bytes read and
// the first error other than EOF.
type trackedReader struct {
	r   io.Reader
	n   int64
	err error
}

func (t *trackedReader) Read(p []byte) (int, error) {
	k, err := t.r.Read(p)
	t.n += int64(k)
	if err != nil && err != io.EOF && t.err == nil {
		t.err = err
	}
	return k, err
}
