package gatewayapi

import (
	"fmt"
	"net/http"

	"github.com/gorilla/mux"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/blockstore/keepwire"
	"github.com/keepgate/keepgate/gateway"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/metering"
)

// resolveGet is everything a GET or HEAD goes through before a store is
// asked: parse (locator, Range), authenticate (the rule and the storage
// come with the principal), the empty block's ranges, the signature step
// toward the stores or the upstream (gateway.PrepareGet), and admission
// (store slot and copy buffer from the principal's share, the meter).
// release is never nil; the transfer record gets the block and principal.
func (s *Server) resolveGet(r *http.Request) (req gateway.GetRequest, release func(), err error) {
	release = func() {}
	t := metering.From(r.Context())
	if req, err = parseGet(r); err != nil {
		return req, release, err
	}
	t.Block = req.Locator.Hash.String()
	if req.Locator.HasSize() {
		t.Block = fmt.Sprintf("%s+%d", req.Locator.Hash, req.Locator.Size)
	}
	if req.Token, req.Identity, err = s.authorize(r, access.ScopeRead); err != nil {
		return req, release, err
	}
	req.Host = r.Host
	if req.Locator.Hash == blockstore.EmptyHash {
		// Every range of the empty block is unsatisfiable except
		// "bytes=0-", which is the whole (empty) block.
		if req.Range != nil && (req.Range.From != 0 || req.Range.To >= 0) {
			return req, release, gateway.Unsatisfiable(0)
		}
		return req, release, nil
	}
	if err = s.gw.PrepareGet(&req); err != nil {
		return req, release, err
	}
	slot, err := s.gw.AdmitRead(r.Context(), req.Identity, req.Head)
	if err != nil {
		return req, release, err
	}
	metered, err := s.admit(r)
	if err != nil {
		slot()
		return req, release, err
	}
	return req, func() { metered(); slot() }, nil
}

func parseGet(r *http.Request) (gateway.GetRequest, error) {
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	if err != nil {
		return gateway.GetRequest{}, err
	}
	req := gateway.GetRequest{Locator: loc, Head: r.Method == http.MethodHead}
	if rh := r.Header.Get("Range"); rh != "" && !req.Head {
		if req.Range, err = keepwire.ParseRange(rh); err != nil {
			return req, err
		}
		if req.Range.From < 0 { // suffix range: needs the size hint
			if !loc.HasSize() {
				return req, blockstore.Errorf(blockstore.KindBadRange, "a suffix Range needs a locator with a size hint")
			}
			req.Range.From = max(0, loc.Size+req.Range.From)
		}
	}
	return req, nil
}

// resolvePut is everything a PUT or POST goes through before its body is
// read: parse (loop, Content-Length, locator, size hint), authenticate,
// the principal's storage (replicas, classes), the size limit, admission.
// req.Body is then the client's body, under its idle timeout, minimum
// rate and the transfer's pacing; body counts what was read of it.
// release is never nil.
func (s *Server) resolvePut(w http.ResponseWriter, r *http.Request) (req gateway.PutRequest, body *httpserver.ProgressReader, release func(), err error) {
	release = func() {}
	if req, err = s.parsePut(r); err != nil {
		return req, nil, release, err
	}
	noteRequest(r, req)
	if req.Token, req.Identity, err = s.authorize(r, access.ScopeWrite); err != nil {
		return req, nil, release, err
	}
	req.Host = r.Host
	if err = s.fitStorage(r, &req); err != nil {
		return req, nil, release, err
	}
	if req.Size > blockstore.MaxBlockSize {
		return req, nil, release, blockstore.E(r.Method, blockstore.KindTooLarge)
	}
	if release, err = s.admit(r); err != nil {
		return req, nil, func() {}, err
	}
	body = httpserver.ProgressBody(w, r, s.opt.BodyIdleTimeout)
	req.Body = pacedBody(r.Context(), newMinRateReader(body, s.opt.MinBodyRate, s.opt.BodyGrace), metering.From(r.Context()).In)
	return req, body, release, nil
}

// resolvePost is resolvePut for a body whose hash the client did not
// compute: the body is buffered (its size comes from the memory budget,
// gateway.ReadPost) and hashed, then written like a PUT. release also
// gives the buffers back.
func (s *Server) resolvePost(w http.ResponseWriter, r *http.Request) (gateway.PutRequest, func(), error) {
	req, body, release, err := s.resolvePut(w, r)
	if err != nil {
		return req, release, err
	}
	t := metering.From(r.Context())
	pb, err := s.gw.ReadPost(r.Context(), req.Identity, req.Body, req.Size)
	t.BytesIn = body.N
	if err != nil {
		return req, release, err
	}
	s.metrics.bytesIn.Add(float64(req.Size))
	req.Hash, req.Body = pb.Hash(), pb.Reader()
	t.Block = fmt.Sprintf("%s+%d", req.Hash, req.Size)
	return req, func() { pb.Release(); release() }, nil
}

// noteRequest puts what a PUT or POST asks for on its transfer.
func noteRequest(r *http.Request, req gateway.PutRequest) {
	t := metering.From(r.Context())
	t.ClassesAsked, t.ReplicasWanted = req.Classes, req.Replicas
	if r.Method == http.MethodPut {
		t.Block = fmt.Sprintf("%s+%d", req.Hash, req.Size)
	}
}

// parsePut applies the checks that come before authentication, in the
// order of KEEP-PROTOCOL §6.4: loop, Content-Length (411), locator (400),
// size hint vs Content-Length (400).
func (s *Server) parsePut(r *http.Request) (gateway.PutRequest, error) {
	if err := s.checkLoop(r); err != nil {
		return gateway.PutRequest{}, err
	}
	if r.ContentLength < 0 {
		return gateway.PutRequest{}, blockstore.Errorf(blockstore.KindLengthRequired, "Length Required: send a Content-Length header (chunked uploads are not accepted)")
	}
	req := gateway.PutRequest{Size: r.ContentLength, Replicas: s.opt.DefaultReplicas, Classes: httpserver.ParseClasses(r.Header.Get(keepwire.StorageClasses))}
	req.Replicas = keepwire.ParseDesiredReplicas(r.Header.Get(keepwire.DesiredReplicas), s.opt.DefaultReplicas)
	if r.Method == http.MethodPost {
		return req, nil
	}
	loc, err := blockstore.ParseLocator(mux.Vars(r)["locator"])
	if err != nil {
		return req, err
	}
	if loc.Size > 0 && loc.Size != r.ContentLength {
		return req, blockstore.Errorf(blockstore.KindBadRequest, "Locator size hint does not match Content-Length header")
	}
	req.Hash = loc.Hash
	return req, nil
}

// fitStorage applies the principal's storage to a PUT or POST (replicas,
// classes: placement.Storage.Fit) and notes what it asks for on the
// transfer.
func (s *Server) fitStorage(r *http.Request, req *gateway.PutRequest) error {
	st, err := s.gw.StorageOf(req.Identity)
	if err != nil {
		return err
	}
	asked := keepwire.ParseDesiredReplicas(r.Header.Get(keepwire.DesiredReplicas), 0) > 0
	if req.Replicas, err = st.Fit(req.Replicas, asked, req.Classes); err != nil {
		return err
	}
	metering.From(r.Context()).ReplicasWanted = req.Replicas
	return nil
}

// indexRequest is a resolved /index request.
type indexRequest struct {
	id     *access.Identity
	prefix string
	token  string // the caller's (gateway.OpenIndex may send the stores' admin token instead)
}

// resolveIndex authenticates an /index request (admin scope: access keys
// never carry it, so /index is theirs to see in no storage, 403), admits
// it, and reads the prefix from the path or the prefix query parameter.
// release is never nil.
func (s *Server) resolveIndex(r *http.Request) (req indexRequest, release func(), err error) {
	release = func() {}
	if req.token, req.id, err = s.authorize(r, access.ScopeAdmin); err != nil {
		return req, release, err
	}
	if release, err = s.admit(r); err != nil {
		return req, func() {}, err
	}
	req.prefix = mux.Vars(r)["prefix"]
	if q := r.URL.Query().Get("prefix"); q != "" {
		if !blockstore.IsHexPrefix(q) {
			return req, release, blockstore.Errorf(blockstore.KindBadRequest, "index prefix must be 0-32 lowercase hex digits")
		}
		req.prefix = q
	}
	return req, release, nil
}
