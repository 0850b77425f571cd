package placement

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/every"
)

// Discovery is the registry of keepstores an Arvados-compatible API
// server keeps (keep_services/accessible): with no stores configured,
// keepproxy takes its stores from there at start and Feed keeps the
// router's list current.
type Discovery struct {
	BaseURL string // e.g. https://api.example.com
	Client  *http.Client
}

// Discover lists the keepstores the API server reports in
// keep_services/accessible (proxies excluded, so a proxy never forwards to
// itself). A keep_services record names a host and port, so discovered
// stores are always http:// or https://; a store behind a tunnel
// (http+unix:///path/to/socket) is listed in keepproxy's stores instead,
// with the uuid it has in the cluster (without one, its synthetic UUID
// hashes the URL as written, socket path included). Failures are
// KindBadGateway.
func (d *Discovery) Discover(ctx context.Context, token string) ([]Service, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.BaseURL+"/arvados/v1/keep_services/accessible", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := d.Client.Do(req)
	if err != nil {
		return nil, blockstore.E("discover", blockstore.KindBadGateway, "API server unreachable for keep service discovery", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, blockstore.Errorf(blockstore.KindBadGateway, "keep service discovery: API server answered %d", resp.StatusCode)
	}
	var list struct {
		Items []struct {
			UUID        string `json:"uuid"`
			Host        string `json:"service_host"`
			Port        int    `json:"service_port"`
			SSL         bool   `json:"service_ssl_flag"`
			ServiceType string `json:"service_type"`
			ReadOnly    bool   `json:"read_only"`
		} `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, blockstore.E("discover", blockstore.KindBadGateway, "unreadable keep_services reply", err)
	}
	var out []Service
	for _, it := range list.Items {
		if it.ServiceType == "proxy" {
			continue
		}
		scheme := "http"
		if it.SSL {
			scheme = "https"
		}
		out = append(out, Service{UUID: it.UUID, URL: fmt.Sprintf("%s://%s:%d", scheme, it.Host, it.Port), ReadOnly: it.ReadOnly})
	}
	if len(out) == 0 {
		return nil, blockstore.Errorf(blockstore.KindBadGateway, "keep service discovery: the API server lists no keep stores")
	}
	return out, nil
}

// Feed rediscovers the stores every interval until ctx is done and hands
// each list to set (the gateway's SetServices, i.e. its rendezvous
// router); a failure is logged and keeps the previous list.
func (d *Discovery) Feed(ctx context.Context, token string, interval time.Duration, set func([]Service), log *slog.Logger) {
	every.Do(ctx, interval, func(ctx context.Context) {
		svcs, err := d.Discover(ctx, token)
		if err != nil {
			log.Warn("keep service discovery failed; keeping the previous list", "error", err.Error())
			return
		}
		set(svcs)
	})
}
