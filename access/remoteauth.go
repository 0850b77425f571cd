package access

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
)

// RemoteAuth validates tokens against an Arvados-compatible API server:
// GET /arvados/v1/users/current with the token. A 403 there (a scoped
// "sharing link" token) is retried as HEAD /arvados/v1/keep_services/accessible,
// whose success grants read only. Admin users get the admin scope.
type RemoteAuth struct {
	BaseURL string // e.g. https://api.example.com
	Client  *http.Client
}

// NewRemoteAuth builds a RemoteAuth for host ("host:port" or a URL).
func NewRemoteAuth(host string, insecure bool) *RemoteAuth {
	base := host
	if !strings.Contains(base, "://") {
		base = "https://" + base
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &RemoteAuth{BaseURL: strings.TrimRight(base, "/"), Client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// Authenticate implements Authenticator.
func (a *RemoteAuth) Authenticate(ctx context.Context, token string) (*Identity, error) {
	status, body, err := a.call(ctx, http.MethodGet, "/arvados/v1/users/current", token)
	if err != nil {
		return nil, err
	}
	switch {
	case status == http.StatusOK:
		var u struct {
			UUID    string `json:"uuid"`
			IsAdmin bool   `json:"is_admin"`
		}
		if err := json.Unmarshal(body, &u); err != nil {
			return nil, blockstore.E("RemoteAuth", blockstore.KindBadGateway, "API server sent an unreadable users/current reply", err)
		}
		id := &Identity{Name: u.UUID, Scopes: []Scope{ScopeRead, ScopeWrite}, Source: "api"}
		if u.IsAdmin {
			id.Scopes = append(id.Scopes, ScopeAdmin)
		}
		return id, nil
	case status == http.StatusForbidden:
		st, _, err := a.call(ctx, http.MethodHead, "/arvados/v1/keep_services/accessible", token)
		if err != nil {
			return nil, err
		}
		if st == http.StatusOK {
			return &Identity{Name: "scoped-" + TokenID(token), Scopes: []Scope{ScopeRead}, Source: "api"}, nil
		}
		return nil, ErrBadToken
	case status == http.StatusUnauthorized || status == http.StatusNotFound || (status >= 400 && status < 500):
		return nil, ErrBadToken
	default:
		return nil, blockstore.E("RemoteAuth", blockstore.KindBadGateway, fmt.Sprintf("API server answered %d to a token check; try again later", status))
	}
}

func (a *RemoteAuth) call(ctx context.Context, method, path, token string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, a.BaseURL+path, nil)
	if err != nil {
		return 0, nil, blockstore.E("RemoteAuth", blockstore.KindInternal, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if id := httpserver.RequestIDFrom(ctx); id != "" {
		req.Header.Set("X-Request-Id", id)
	}
	resp, err := a.Client.Do(req)
	if err != nil {
		return 0, nil, blockstore.E("RemoteAuth", blockstore.KindBadGateway, "API server unreachable for token check; try again later", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, body, nil
}
