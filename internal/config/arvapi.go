package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// ArvadosAPI configures the slice of the Arvados API keepproxy serves on
// its own listener (package arvapi): the discovery document, config,
// users/current, keep_services/accessible and collections, so arv-put,
// arv-get, arv-ls and the SDKs work against keepgate alone with access
// keys as tokens. Off unless enabled; it needs state (collections live in
// the state database) and the blob signing key (manifests are signed for
// each caller).
type ArvadosAPI struct {
	Enabled bool `mapstructure:"enabled"`
	// UUIDPrefix is the cluster id in every UUID the API makes ("":
	// cluster_id). Never change it once collections exist: clients treat
	// UUIDs of another prefix as another cluster's.
	UUIDPrefix string `mapstructure:"uuid_prefix"`
	// MaxRequestSize bounds API request bodies, and so manifest text
	// (413 beyond; 0: 64MiB, nginx's client_max_body_size).
	MaxRequestSize ByteSize `mapstructure:"max_request_size"`
	// TrashLifetime: how long a trashed collection can still be fetched
	// with include_trash (0: 336h).
	TrashLifetime time.Duration `mapstructure:"trash_lifetime"`
}

// ArvadosUUIDPrefix is the effective uuid_prefix.
func (c *Keepproxy) ArvadosUUIDPrefix() string {
	if c.ArvadosAPI.UUIDPrefix != "" {
		return c.ArvadosAPI.UUIDPrefix
	}
	return c.ClusterID
}

// ValidateArvadosAPI checks the arvados_api section against the rest of
// the configuration (nil when it is off).
func (c *Keepproxy) ValidateArvadosAPI() error {
	a := c.ArvadosAPI
	if !a.Enabled {
		return nil
	}
	var errs []string
	bad := func(f string, args ...any) { errs = append(errs, fmt.Sprintf(f, args...)) }
	if p := c.ArvadosUUIDPrefix(); !clusterIDRe.MatchString(p) {
		bad("arvados_api.uuid_prefix %q: must be 5 lowercase letters or digits", p)
	}
	if !c.State.Enabled() {
		bad("arvados_api.enabled: collections live in the state database: set state.path (or state.dsn_file)")
	}
	if c.BlobSigningKeyFile == "" || c.StoreWriteTokenFile == "" {
		bad("arvados_api.enabled: the API signs every manifest for its caller: set blob_signing_key_file and store_write_token_file")
	}
	if a.MaxRequestSize != 0 && (a.MaxRequestSize < 64<<10 || a.MaxRequestSize > 1<<30) {
		bad("arvados_api.max_request_size %s: want 0 (64MiB) or between 64KiB and 1GiB (and no more than nginx's client_max_body_size)", a.MaxRequestSize)
	}
	if a.TrashLifetime < 0 {
		bad("arvados_api.trash_lifetime %v: must not be negative", a.TrashLifetime)
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}
