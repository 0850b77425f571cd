package gateway

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/placement"
)

// upstreamOf returns the upstream storage a principal uses, if it is one.
func (g *Gateway) upstreamOf(id *access.Identity) (placement.Storage, bool) {
	st, err := g.StorageOf(id)
	return st, err == nil && st.Upstream != nil
}

// rHintPrefix starts the hint that carries an upstream's signature:
// "Rkg" + 8 hex of md5(storage name) + "-" (the hint grammar allows no '.'
// that a storage name may hold).
func rHintPrefix(storage string) string {
	sum := md5.Sum([]byte(storage))
	return "Rkg" + hex.EncodeToString(sum[:4]) + "-"
}

// putUpstream streams a PUT to the principal's upstream storage: one
// request, the replicas and classes asked passed on, the upstream's
// X-Keep-Replicas-Stored and confirmed classes passed back.
func (g *Gateway) putUpstream(ctx context.Context, st placement.Storage, req PutRequest) (PutResult, error) {
	token := req.Token
	if st.Upstream.Identity == placement.IdentitySquashed {
		token = st.Upstream.Token
	}
	rep, err := g.up.put(ctx, st.UpstreamService(), req.Hash, req.Size, req.Body,
		putHeaders{token: token, replicas: req.Replicas, classes: req.Classes, requestID: httpserver.RequestIDFrom(ctx)})
	res := PutResult{Replicas: rep.replicas, Classes: rep.confirmed}
	if err != nil {
		res.Replicas = 0
		g.log.Warn("upstream storage refused or failed a PUT", "request_id", httpserver.RequestIDFrom(ctx), "storage", st.Name, "upstream", st.Upstream.URL, "error", err.Error())
		return res, err
	}
	if res.Classes == nil {
		res.Classes = map[string]int{}
	}
	res.Locator = rep.locator
	if st.Upstream.Identity == placement.IdentitySquashed {
		res.Locator = g.wrapUpstreamLocator(st, rep.locator, req)
	}
	return res, nil
}

// wrapUpstreamLocator gives the caller of a squashed storage a locator
// signed by keepgate for it, with the upstream's signature in an R hint.
func (g *Gateway) wrapUpstreamLocator(st placement.Storage, upLoc string, req PutRequest) string {
	loc, err := blockstore.ParseLocator(upLoc)
	if err != nil || loc.Hash != req.Hash {
		loc = blockstore.Locator{Hash: req.Hash, Size: req.Size}
	}
	var hints []string
	for _, h := range loc.Hints {
		if h[0] == 'A' {
			hints = append(hints, rHintPrefix(st.Name)+h[1:])
		} else if h[0] != 'R' {
			hints = append(hints, h)
		}
	}
	loc.Hints = hints
	return g.signForCaller(loc, req.Identity, req.Token).String()
}

// toUpstream prepares a GET for an upstream storage. Squashed: the
// caller's signature is checked by keepgate (a failure answers 422, as a
// store's refusal does), and the locator sent upstream carries the
// upstream's signature from the R hint, with the service token.
// Individual: the caller's locator and token go as they are.
func (g *Gateway) toUpstream(st placement.Storage, req *GetRequest) error {
	if st.Upstream.Identity != placement.IdentitySquashed {
		return nil
	}
	refused := func(err error) error {
		return &blockstore.Error{Op: "gateway.Open", Kind: blockstore.KindUnprocessable, Msg: "keep stores refused the request: " + blockstore.Message(err), Err: err}
	}
	signedFor := req.Token
	if g.keySigned(req.Identity) {
		signedFor = req.Identity.UID
	}
	if g.signer != nil {
		if err := g.signer.Verify(req.Locator, signedFor); err != nil {
			return refused(err)
		}
	}
	up := blockstore.Locator{Hash: req.Locator.Hash, Size: req.Locator.Size}
	prefix := rHintPrefix(st.Name)
	found := false
	for _, h := range req.Locator.Hints {
		switch {
		case strings.HasPrefix(h, prefix):
			up.Hints = append(up.Hints, "A"+h[len(prefix):])
			found = true
		case h[0] == 'A' || h[0] == 'R':
		default:
			up.Hints = append(up.Hints, h)
		}
	}
	if !found && hasHint(req.Locator, 'R') {
		return refused(blockstore.Errorf(blockstore.KindInvalidSignature, "invalid signature: this locator was signed through another storage than %s", st.Name))
	}
	req.Locator, req.Token = up, st.Upstream.Token
	return nil
}

func hasHint(l blockstore.Locator, c byte) bool {
	for _, h := range l.Hints {
		if h[0] == c {
			return true
		}
	}
	return false
}

// viaOf is the Via keepgate sends to an upstream gateway: not "keepproxy"
// (which an upstream refuses as a loop) but its own proxy id and a random
// instance tag, by which it recognises its own requests coming back (a
// storage pointing, directly or through others, at itself).
func viaOf(proxyID string) string {
	id := strings.Map(func(r rune) rune {
		if r <= ' ' || r == ',' || r > '~' {
			return '_'
		}
		return r
	}, proxyID)
	var b [4]byte
	rand.Read(b[:])
	// The random part tells apart two keepgates with one proxy id (one
	// host name): only this process's own requests are a loop.
	return "HTTP/1.1 keepgate-" + id + "-" + hex.EncodeToString(b[:])
}

// Loops reports whether a request whose Via header is via already passed
// through a keepproxy (an Arvados one, or keepgate toward its stores) or
// through this keepgate: answering it would loop (KindLoop).
func (g *Gateway) Loops(via string) bool {
	return strings.Contains(via, " keepproxy") || strings.Contains(via, g.up.via)
}
