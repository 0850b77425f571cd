package node

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

// The checksum scan gives every block of a volume written before chunk
// checksums existed its checksums, in the background and at a bounded
// read rate, so that reads of old blocks stop needing a whole-block MD5
// pass. Reads do the same for the blocks they verify whole; the scan does
// it for the rest. Each block without checksums is read once, MD5-checked
// and its checksums stored; a block that fails is counted and remembered
// as a damaged copy, like a failed read.

// DefaultScanRate is the read rate of a scan when none is given.
const DefaultScanRate = 50 << 20 // bytes per second

// ScanStatus is the progress of the last checksum scan (GET /checksums).
type ScanStatus struct {
	Running  bool      `json:"running"`
	Mounts   []string  `json:"mounts"`
	Rate     int64     `json:"rate_bytes_per_second"`
	Blocks   int       `json:"blocks_seen"`
	Added    int       `json:"checksums_added"`
	Damaged  int       `json:"damaged_copies"`
	Failed   int       `json:"failed"`
	Read     int64     `json:"bytes_read"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// scanner runs at most one scan per node.
type scanner struct {
	mu     sync.Mutex
	status ScanStatus
	cancel context.CancelFunc
	done   chan struct{}
}

// StartChecksumScan starts a background scan of the writable mount
// mountUUID ("" for every writable mount) reading at most rate bytes per
// second (≤ 0: DefaultScanRate), unless one is already running, and
// returns its status. It stops when ctx (the node's lifetime) ends or
// StopChecksumScan is called. An unknown or read-only mount is
// KindNotFound / KindReadOnly.
func (n *Node) StartChecksumScan(ctx context.Context, mountUUID string, rate int64) (ScanStatus, error) {
	mounts := n.writableByUUID()
	if mountUUID != "" {
		m, ok := n.byUUID[mountUUID]
		switch {
		case !ok:
			return ScanStatus{}, blockstore.Errorf(blockstore.KindNotFound, "no mount with uuid %q", truncate(mountUUID, 40))
		case m.ReadOnly:
			return ScanStatus{}, blockstore.Errorf(blockstore.KindReadOnly, "mount %s is read-only: its blocks cannot be given checksums", m.UUID)
		}
		mounts = []*mount{m}
	}
	if rate <= 0 {
		rate = DefaultScanRate
	}
	s := &n.scan
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.status.Running {
		return s.status, nil
	}
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.status = ScanStatus{Running: true, Rate: rate, Started: time.Now()}
	for _, m := range mounts {
		s.status.Mounts = append(s.status.Mounts, m.UUID)
	}
	s.cancel, s.done = cancel, make(chan struct{})
	go n.runScan(cctx, mounts, rate, s.done)
	return s.status, nil
}

// StopChecksumScan cancels a running scan and waits for it to stop.
func (n *Node) StopChecksumScan() ScanStatus {
	s := &n.scan
	s.mu.Lock()
	cancel, done := s.cancel, s.done
	s.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
	return n.ChecksumScan()
}

// ChecksumScan returns the status of the running or last scan.
func (n *Node) ChecksumScan() ScanStatus {
	n.scan.mu.Lock()
	defer n.scan.mu.Unlock()
	st := n.scan.status
	st.Mounts = append([]string(nil), st.Mounts...)
	return st
}

func (n *Node) runScan(ctx context.Context, mounts []*mount, rate int64, done chan struct{}) {
	defer close(done)
	p := &pacer{rate: rate, start: time.Now()}
	var err error
	for _, m := range mounts {
		err = m.vol.Index(ctx, "", func(bi blockstore.BlockInfo) error {
			n.scanOne(ctx, m, bi, p)
			return ctx.Err()
		})
		if err != nil {
			break
		}
	}
	s := &n.scan
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Running, s.status.Finished = false, time.Now()
	if err != nil {
		s.status.Error = err.Error()
	}
	s.cancel = nil
	n.log.Info("checksum scan finished", "blocks", s.status.Blocks, "added", s.status.Added,
		"damaged", s.status.Damaged, "failed", s.status.Failed, "bytes_read", s.status.Read, "error", s.status.Error)
}

// scanOne gives block bi on m its checksums if it has none.
func (n *Node) scanOne(ctx context.Context, m *mount, bi blockstore.BlockInfo, p *pacer) {
	count := func(f func(*ScanStatus)) {
		n.scan.mu.Lock()
		f(&n.scan.status)
		n.scan.mu.Unlock()
	}
	count(func(s *ScanStatus) { s.Blocks++ })
	rc, info, err := m.vol.Get(ctx, bi.Hash, 0, -1)
	if err != nil {
		if !blockstore.Is(err, blockstore.KindNotFound) && ctx.Err() == nil {
			count(func(s *ScanStatus) { s.Failed++ })
		}
		return
	}
	defer rc.Close()
	if info.Checksums != nil || info.Size == 0 {
		return
	}
	var sums blockstore.ChunkHasher
	src := blockstore.NewVerifyingReader(blockstore.ContextReader(ctx, p.reader(ctx, rc)), bi.Hash, info.Size)
	_, err = io.Copy(&sums, src)
	count(func(s *ScanStatus) { s.Read += sums.Written() })
	switch k := blockstore.KindOf(err); {
	case err == nil:
		n.storeSums(ctx, m, bi.Hash, sums.Sum())
		count(func(s *ScanStatus) { s.Added++ })
	case k == blockstore.KindHashMismatch || k == blockstore.KindLengthMismatch || k == blockstore.KindCorrupt:
		n.countDamaged(ctx, m, bi.Hash, err)
		count(func(s *ScanStatus) { s.Damaged++ })
	case ctx.Err() == nil:
		n.log.Warn("checksum scan cannot read a block", "mount", m.UUID, "hash", bi.Hash.String(), "error", err.Error())
		count(func(s *ScanStatus) { s.Failed++ })
	}
}

// pacer keeps a scan's reads at rate bytes per second on average.
type pacer struct {
	rate  int64
	start time.Time
	mu    sync.Mutex
	n     int64
}

func (p *pacer) reader(ctx context.Context, r io.Reader) io.Reader {
	return readerFunc(func(b []byte) (int, error) {
		if len(b) > 256<<10 {
			b = b[:256<<10]
		}
		k, err := r.Read(b)
		p.mu.Lock()
		p.n += int64(k)
		due := p.start.Add(time.Duration(float64(p.n) / float64(p.rate) * float64(time.Second)))
		if behind := time.Since(due); behind > time.Second {
			// Time spent skipping blocks that have checksums is no credit
			// for a burst: at most one second's worth.
			p.start = p.start.Add(behind - time.Second)
			due = due.Add(behind - time.Second)
		}
		p.mu.Unlock()
		if wait := time.Until(due); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return k, ctx.Err()
			case <-t.C:
			}
		}
		return k, err
	})
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
