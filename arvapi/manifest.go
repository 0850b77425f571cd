package arvapi

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/manifest"
)

// checked is a manifest accepted for saving.
type checked struct {
	stripped string // every locator cut to hash+size
	pdh      string
	files    int64
	bytes    int64
}

// checkManifest accepts a manifest from c as Arvados does, and more: the
// text must parse (422), every locator but the empty block's must carry a
// signature valid for c (403), and every block must be in c's storage
// (422 when one is not; the stores' own kind when they cannot tell).
func (s *Server) checkManifest(ctx context.Context, c *Caller, text string) (checked, error) {
	if int64(len(text)) > s.opt.MaxRequestSize {
		return checked{}, blockstore.Errorf(blockstore.KindTooLarge, "manifest_text is %d bytes, over the limit of %d (arvados_api.max_request_size)", len(text), s.opt.MaxRequestSize)
	}
	m, err := manifest.Parse(text)
	if err != nil {
		return checked{}, &blockstore.Error{Kind: blockstore.KindUnprocessable, Msg: blockstore.Message(err), Err: err}
	}
	var out checked
	seen, files := map[string]bool{}, map[string]bool{}
	var blocks []blockstore.Locator
	for _, st := range m.Streams {
		for _, loc := range st.Blocks {
			if loc.Hash == blockstore.EmptyHash && loc.Size == 0 {
				continue
			}
			if !loc.Signed() {
				return checked{}, forbidden("Forbidden: locator %s in manifest_text is not signed: send the signed locators Keep returned for your token", loc.WithoutHints())
			}
			if err := s.opt.Keep.Verify(c, loc); err != nil {
				return checked{}, &blockstore.Error{Kind: blockstore.KindForbidden, Msg: "Forbidden: locator " + loc.WithoutHints().String() + " in manifest_text: " + blockstore.Message(err) + " (a locator is valid only for the token it was signed for)", Err: err}
			}
			bare := loc.WithoutHints().String()
			if !seen[bare] {
				seen[bare] = true
				blocks = append(blocks, loc)
			}
		}
		for _, seg := range st.Segments {
			if seg.Name == manifest.DirMarker {
				continue
			}
			if p := st.Name + "/" + seg.Name; !files[p] {
				files[p] = true
				out.files++
			}
			out.bytes += seg.Len
		}
	}
	if err := s.checkPresent(ctx, c, blocks); err != nil {
		return checked{}, err
	}
	out.stripped = stripText(text)
	out.pdh = pdhOf(out.stripped)
	return out, nil
}

// checkPresent checks blocks concurrently (CheckConcurrency at a time);
// the first failure wins.
func (s *Server) checkPresent(ctx context.Context, c *Caller, blocks []blockstore.Locator) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	sem := make(chan struct{}, s.opt.CheckConcurrency)
	for _, loc := range blocks {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			err := s.opt.Keep.CheckBlock(ctx, c, loc)
			if blockstore.Is(err, blockstore.KindNotFound) {
				err = unprocessable("block %s of manifest_text is not in this storage (%s): store it with Keep first", loc.WithoutHints(), c.Storage)
			}
			if err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		first = blockstore.E("arvapi.checkPresent", blockstore.KindCanceled, ctx.Err())
	}
	return first
}

// eachLocator calls f on every locator token of manifest text (validated
// or stored text) and returns the text with each replaced by f's result.
func eachLocator(text string, f func(tok string) string) string {
	var b strings.Builder
	b.Grow(len(text) + len(text)/4)
	for line := range strings.SplitSeq(text, "\n") {
		if line == "" {
			continue
		}
		for i, tok := range strings.Split(line, " ") {
			if i > 0 {
				b.WriteByte(' ')
				if isLocatorToken(tok) {
					tok = f(tok)
				}
			}
			b.WriteString(tok)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// isLocatorToken: 32 lowercase hex digits then "+" (file tokens have a
// ':' in their leading digits).
func isLocatorToken(t string) bool {
	if len(t) < 34 || t[32] != '+' {
		return false
	}
	for i := 0; i < 32; i++ {
		if c := t[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// stripText cuts every locator to hash+size, changing nothing else (the
// portable data hash is computed on this text, as Arvados does: nothing
// is re-sorted or re-escaped).
func stripText(text string) string {
	return eachLocator(text, func(tok string) string {
		if i := strings.IndexByte(tok[33:], '+'); i >= 0 {
			return tok[:33+i]
		}
		return tok
	})
}

// pdhOf is md5(stripped text) + "+" + its length.
func pdhOf(stripped string) string {
	return blockstore.HashOf([]byte(stripped)).String() + "+" + itoa(int64(len(stripped)))
}

// signText signs every locator of stored (stripped) text for c, expiring
// at now + TTL or notAfter if earlier.
func (s *Server) signText(c *Caller, stripped string, notAfter time.Time) string {
	return eachLocator(stripped, func(tok string) string {
		loc, err := blockstore.ParseLocator(tok)
		if err != nil {
			return tok
		}
		return s.opt.Keep.Sign(c, loc, notAfter).String()
	})
}
