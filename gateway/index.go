package gateway

import (
	"context"
	"io"
	"net/http"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/placement"
)

// OpenIndex opens one store's answer to /index (prefix: "" or up to 32
// hex digits), asked with token, or with Options.StoreAdminToken when one
// is set. The caller reads it to its blank-line terminator and closes it;
// a failure is KindBadGateway.
func (g *Gateway) OpenIndex(ctx context.Context, svc placement.Service, prefix, token string) (io.ReadCloser, error) {
	if g.opt.StoreAdminToken != "" {
		token = g.opt.StoreAdminToken
	}
	path := "index"
	if prefix != "" {
		path += "/" + prefix
	}
	resp, err := g.up.get(ctx, svc, path, http.MethodGet, token, httpserver.RequestIDFrom(ctx), 0)
	if err != nil {
		return nil, &blockstore.Error{Kind: blockstore.KindBadGateway, Msg: "index request to a keep store failed: " + blockstore.Message(err), Err: err}
	}
	return resp.Body, nil
}
