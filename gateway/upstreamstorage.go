package gateway

import (
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// Upstream makes a storage another Keep gateway (a keepgate or an Arvados
// keepproxy, KEEP-PROTOCOL §6) instead of a pool of keepstores. Blocks
// stream through keepgate to it and back, with Range and the X-Keep-*
// headers, under keepgate's rules, CORS, budgets and audit.
//
// Identity says who keepgate is toward it:
//   - squashed: keepgate authenticates the caller itself (access keys,
//     token file) and talks upstream with one service token, Token. The
//     locator the caller gets is signed by keepgate for the caller and
//     carries the upstream's own signature for the service token in an
//     +R hint (as Arvados federation carries a remote cluster's), which
//     keepgate presents upstream on GET. A locator without it, or with
//     another storage's, is refused.
//   - individual: the caller's own token goes upstream unchanged and the
//     upstream signs and decides; keepgate passes locators through. Tokens
//     keepgate does not know are accepted for such a storage (the upstream
//     judges them); access keys cannot be bound to it.
type Upstream struct {
	URL      string
	Identity string
	Token    string // squashed: keepgate's token at the upstream
}

// Identity modes of an upstream storage.
const (
	IdentitySquashed   = "squashed"
	IdentityIndividual = "individual"
)

// upstreamService is the one "store" of an upstream storage.
func (s Storage) upstreamService() Service {
	return Service{UUID: "upstream-" + s.Name, URL: strings.TrimRight(s.Upstream.URL, "/")}
}

// upstreamOf returns the upstream storage a principal uses, if it is one.
func (g *Gateway) upstreamOf(id *Identity) (Storage, bool) {
	st, err := g.storageOf(id)
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
func (g *Gateway) putUpstream(ctx context.Context, st Storage, req PutRequest) (PutResult, error) {
	token := req.Token
	if st.Upstream.Identity == IdentitySquashed {
		token = st.Upstream.Token
	}
	rep, err := g.up.put(ctx, st.upstreamService(), req.Hash, req.Size, req.Body,
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
	if st.Upstream.Identity == IdentitySquashed {
		res.Locator = g.wrapUpstreamLocator(st, rep.locator, req)
	}
	return res, nil
}

// wrapUpstreamLocator gives the caller of a squashed storage a locator
// signed by keepgate for it, with the upstream's signature in an R hint.
func (g *Gateway) wrapUpstreamLocator(st Storage, upLoc string, req PutRequest) string {
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
func (g *Gateway) toUpstream(st Storage, req *GetRequest) error {
	if st.Upstream.Identity != IdentitySquashed {
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

// passThrough accepts a token keepgate does not know when the request
// would use an individual upstream storage (the rule's default storage,
// or the default storage): the upstream judges it. It returns nil
// otherwise (the refusal authErr stands).
func (g *Gateway) passThrough(r *http.Request, token string, authErr error) *Identity {
	if !blockstore.Is(authErr, blockstore.KindForbidden) {
		return nil
	}
	var final *FinalRefusal
	if errors.As(authErr, &final) {
		return nil
	}
	name := g.opt.DefaultStorage
	if rule := ruleFrom(r.Context()); rule != nil {
		name = rule.DefaultStorage
	}
	st, err := g.storageOf(&Identity{Storage: name})
	if err != nil || st.Upstream == nil || st.Upstream.Identity != IdentityIndividual {
		return nil
	}
	return &Identity{Name: "upstream-token-" + TokenID(token), Source: "upstream", Storage: st.Name, Scopes: []Scope{ScopeRead, ScopeWrite}}
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

// isLoop reports a request that already passed through a keepproxy (an
// Arvados one, or keepgate toward its stores) or through this keepgate.
func (g *Gateway) isLoop(r *http.Request) bool {
	via := r.Header.Get("Via")
	return strings.Contains(via, " keepproxy") || strings.Contains(via, g.up.via)
}
