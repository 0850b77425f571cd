package admin

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"

	"github.com/keepgate/keepgate/access"
	"github.com/keepgate/keepgate/state"
)

// keyJSON is an access key as the API shows it (Aspera Node API shapes).
type keyJSON struct {
	ID            string        `json:"id"`
	Secret        string        `json:"secret,omitempty"` // only when created
	Storage       storageJSON   `json:"storage"`
	Scopes        []string      `json:"scopes"`
	Description   string        `json:"description"`
	CreatedAt     string        `json:"created_at"`
	ExpiresAt     *string       `json:"expires_at"`
	RevokedAt     *string       `json:"revoked_at"`
	Disabled      bool          `json:"disabled"`
	LastUsedAt    *string       `json:"last_used_at"`
	Configuration configuration `json:"configuration"`
}

type storageJSON struct {
	Name string `json:"name"`
}

type configuration struct {
	Transfer transferConf `json:"transfer"`
	Server   serverConf   `json:"server"`
}

type transferConf struct {
	TargetRateCapKbps   *int64 `json:"target_rate_cap_kbps,omitempty"`
	TargetRateInCapKbps *int64 `json:"target_rate_in_cap_kbps,omitempty"`
	MaxConcurrent       *int   `json:"max_concurrent_requests,omitempty"`
}

type serverConf struct {
	ActivityEventLogging *bool `json:"activity_event_logging,omitempty"`
}

func timeOrNil(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(time.RFC3339)
	return &s
}

func show(k state.Key) keyJSON {
	j := keyJSON{ID: k.ID, Storage: storageJSON{k.Storage}, Scopes: k.Scopes, Description: k.Description,
		CreatedAt: k.CreatedAt.UTC().Format(time.RFC3339), ExpiresAt: timeOrNil(k.ExpiresAt), RevokedAt: timeOrNil(k.RevokedAt),
		Disabled: k.Disabled, LastUsedAt: timeOrNil(k.LastUsedAt)}
	capOut, capIn, conc, audit := k.RateCapKbps, k.RateInCapKbps, k.MaxConcurrent, k.AuditEvents
	j.Configuration.Transfer = transferConf{TargetRateCapKbps: &capOut, TargetRateInCapKbps: &capIn, MaxConcurrent: &conc}
	j.Configuration.Server = serverConf{ActivityEventLogging: &audit}
	if j.Scopes == nil {
		j.Scopes = []string{}
	}
	return j
}

// createRequest is the body of POST /access_keys.
type createRequest struct {
	ID            string         `json:"id"`
	Secret        string         `json:"secret"`
	Storage       *storageJSON   `json:"storage"`
	Scopes        *[]string      `json:"scopes"`
	ExpiresAt     string         `json:"expires_at"`
	Description   string         `json:"description"`
	Configuration *configuration `json:"configuration"`
}

func validScopes(s []string) error {
	if len(s) == 0 {
		return errorf(http.StatusBadRequest, "scopes: list at least one of \"read\", \"write\"")
	}
	for _, x := range s {
		if x != "read" && x != "write" {
			return errorf(http.StatusBadRequest, "scopes: unknown scope %q; use \"read\" and/or \"write\"", x)
		}
	}
	return nil
}

func parseExpiry(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return t, errorf(http.StatusBadRequest, "expires_at %q: want RFC 3339, e.g. 2027-01-31T00:00:00Z", s)
	}
	if !t.After(now) {
		return t, errorf(http.StatusBadRequest, "expires_at %s is in the past", s)
	}
	return t, nil
}

// Bounds of a key's limits: larger values are typing mistakes.
const (
	maxRateCapKbps   = 100_000_000 // 100 Gbit/s
	maxConcurrentCap = 100_000
)

func applyConfiguration(k *state.Key, c *configuration) error {
	if c == nil {
		return nil
	}
	t := c.Transfer
	for _, v := range []struct {
		v    *int64
		name string
	}{{t.TargetRateCapKbps, "target_rate_cap_kbps"}, {t.TargetRateInCapKbps, "target_rate_in_cap_kbps"}} {
		if v.v != nil && (*v.v < 0 || *v.v > maxRateCapKbps) {
			return errorf(http.StatusBadRequest, "configuration.transfer.%s %d: rate caps are kbps (1,000 bit/s), from 1 to %d (100 Gbit/s), 0 for none", v.name, *v.v, maxRateCapKbps)
		}
	}
	if t.MaxConcurrent != nil && (*t.MaxConcurrent < 0 || *t.MaxConcurrent > maxConcurrentCap) {
		return errorf(http.StatusBadRequest, "configuration.transfer.max_concurrent_requests %d: from 1 to %d, 0 for none", *t.MaxConcurrent, maxConcurrentCap)
	}
	if t.TargetRateCapKbps != nil {
		k.RateCapKbps = *t.TargetRateCapKbps
	}
	if t.TargetRateInCapKbps != nil {
		k.RateInCapKbps = *t.TargetRateInCapKbps
	}
	if t.MaxConcurrent != nil {
		k.MaxConcurrent = *t.MaxConcurrent
	}
	if c.Server.ActivityEventLogging != nil {
		k.AuditEvents = *c.Server.ActivityEventLogging
	}
	return nil
}

func (a *API) createKey(w http.ResponseWriter, r *http.Request) {
	var req createRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	k, secret, err := a.newKey(req)
	if err == nil {
		err = a.opt.Store.CreateKey(r.Context(), k)
		if errors.Is(err, state.ErrExists) {
			err = errorf(http.StatusConflict, "access key id %q exists or existed; ids are never reused, choose another", k.ID)
		}
	}
	if err != nil {
		a.fail(w, "create access key", err)
		return
	}
	a.opt.Changed(k.ID)
	a.opt.Logger.Info("access key created", "id", k.ID, "storage", k.Storage)
	j := show(k)
	j.Secret = secret
	writeJSON(w, http.StatusCreated, j)
}

// newKey checks a create request and builds the key and its secret.
func (a *API) newKey(req createRequest) (state.Key, string, error) {
	now := a.opt.Now().UTC()
	if req.Storage == nil || req.Storage.Name == "" {
		return state.Key{}, "", errorf(http.StatusBadRequest, "storage: required, e.g. {\"storage\": {\"name\": %q}}; configured storages: %s", first(a.opt.Storage), strings.Join(a.opt.Storage, ", "))
	}
	if slices.Contains(a.opt.Individual, req.Storage.Name) {
		return state.Key{}, "", errorf(http.StatusBadRequest, "storage %q passes each caller's own token upstream (identity: individual), so access keys cannot be bound to it; key storages: %s", req.Storage.Name, strings.Join(a.opt.Storage, ", "))
	}
	if !slices.Contains(a.opt.Storage, req.Storage.Name) {
		return state.Key{}, "", errorf(http.StatusBadRequest, "storage %q is not configured; configured storages: %s", req.Storage.Name, strings.Join(a.opt.Storage, ", "))
	}
	id := req.ID
	if id == "" {
		id = access.NewID(a.opt.Cluster)
	} else if err := access.ValidID(id); err != nil {
		return state.Key{}, "", errorf(http.StatusBadRequest, "%v", err)
	}
	secret := req.Secret
	if secret == "" {
		secret = access.NewSecret()
	} else if err := access.ValidSecret(secret); err != nil {
		return state.Key{}, "", errorf(http.StatusBadRequest, "%v", err)
	}
	scopes := []string{"read", "write"}
	if req.Scopes != nil {
		scopes = *req.Scopes
	}
	if err := validScopes(scopes); err != nil {
		return state.Key{}, "", err
	}
	exp, err := parseExpiry(req.ExpiresAt, now)
	if err != nil {
		return state.Key{}, "", err
	}
	k := state.Key{ID: id, UID: access.NewUID(), Storage: req.Storage.Name, Scopes: scopes, Description: req.Description,
		CreatedAt: now, ExpiresAt: exp, SecretHash: a.opt.Hasher.Hash(secret), AuditEvents: true}
	if err := applyConfiguration(&k, req.Configuration); err != nil {
		return state.Key{}, "", err
	}
	return k, secret, nil
}

func first(s []string) string {
	if len(s) == 0 {
		return "NAME"
	}
	return s[0]
}

// fail answers err; internal errors are logged with what failed.
func (a *API) fail(w http.ResponseWriter, what string, err error) {
	var ae *apiError
	if errors.Is(err, state.ErrNotFound) {
		err = errorf(http.StatusNotFound, "no such access key")
	} else if !errors.As(err, &ae) {
		a.opt.Logger.Error(what+" failed", "error", err.Error())
		err = errorf(http.StatusServiceUnavailable, "%s failed: the state database is unavailable; retry shortly", what)
	}
	writeErr(w, err)
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	keys, err := a.opt.Store.ListKeys(r.Context(), q.Get("storage"), q.Get("include_revoked") == "true")
	if err != nil {
		a.fail(w, "list access keys", err)
		return
	}
	out := make([]keyJSON, 0, len(keys))
	for _, k := range keys {
		out = append(out, show(k))
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) showKey(w http.ResponseWriter, r *http.Request) {
	k, err := a.opt.Store.GetKey(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		a.fail(w, "show access key", err)
		return
	}
	writeJSON(w, http.StatusOK, show(k))
}

// updateRequest is the body of PATCH /access_keys/{id}: members present
// are changed, the others kept.
type updateRequest struct {
	Scopes        *[]string      `json:"scopes"`
	ExpiresAt     *string        `json:"expires_at"` // "" clears it
	Description   *string        `json:"description"`
	Disabled      *bool          `json:"disabled"`
	Configuration *configuration `json:"configuration"`
}

func (a *API) updateKey(w http.ResponseWriter, r *http.Request) {
	var req updateRequest
	if err := decode(r, &req); err != nil {
		writeErr(w, err)
		return
	}
	id := mux.Vars(r)["id"]
	k, err := a.opt.Store.UpdateKey(r.Context(), id, func(k *state.Key) error {
		if !k.RevokedAt.IsZero() {
			return errorf(http.StatusConflict, "access key %s was revoked; a revoked key cannot be changed", id)
		}
		if req.Scopes != nil {
			if err := validScopes(*req.Scopes); err != nil {
				return err
			}
			k.Scopes = *req.Scopes
		}
		if req.ExpiresAt != nil {
			exp, err := parseExpiry(*req.ExpiresAt, a.opt.Now())
			if err != nil {
				return err
			}
			k.ExpiresAt = exp
		}
		if req.Description != nil {
			k.Description = *req.Description
		}
		if req.Disabled != nil {
			k.Disabled = *req.Disabled
		}
		return applyConfiguration(k, req.Configuration)
	})
	if err != nil {
		a.fail(w, "update access key", err)
		return
	}
	a.opt.Changed(id)
	writeJSON(w, http.StatusOK, show(k))
}

func (a *API) revokeKey(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	_, err := a.opt.Store.UpdateKey(r.Context(), id, func(k *state.Key) error {
		if !k.RevokedAt.IsZero() {
			return state.ErrNotFound // revoked already: 404, as for a key never made
		}
		k.RevokedAt = a.opt.Now().UTC()
		return nil
	})
	if err != nil {
		a.fail(w, "revoke access key", err)
		return
	}
	a.opt.Changed(id)
	a.opt.Logger.Info("access key revoked", "id", id)
	w.WriteHeader(http.StatusNoContent)
}

type rotateRequest struct {
	Overlap string `json:"overlap"`
}

type rotateAnswer struct {
	ID                      string  `json:"id"`
	Secret                  string  `json:"secret"`
	PreviousSecretExpiresAt *string `json:"previous_secret_expires_at"`
}

func (a *API) rotateSecret(w http.ResponseWriter, r *http.Request) {
	req := rotateRequest{Overlap: "0s"}
	if r.ContentLength != 0 {
		if err := decode(r, &req); err != nil {
			writeErr(w, err)
			return
		}
	}
	overlap, err := time.ParseDuration(req.Overlap)
	if err != nil || overlap < 0 {
		writeErr(w, errorf(http.StatusBadRequest, "overlap %q: want a Go duration such as \"24h\" or \"0s\"", req.Overlap))
		return
	}
	id := mux.Vars(r)["id"]
	secret := access.NewSecret()
	now := a.opt.Now().UTC()
	k, err := a.opt.Store.UpdateKey(r.Context(), id, func(k *state.Key) error {
		if !k.RevokedAt.IsZero() {
			return errorf(http.StatusConflict, "access key %s was revoked; create a new key instead", id)
		}
		// Only one previous secret is kept: a second rotation ends the
		// first one's overlap at once.
		k.PrevSecretHash, k.PrevSecretExpiresAt = k.SecretHash, now.Add(overlap)
		if overlap == 0 {
			k.PrevSecretHash, k.PrevSecretExpiresAt = nil, time.Time{}
		}
		k.SecretHash = a.opt.Hasher.Hash(secret)
		return nil
	})
	if err != nil {
		a.fail(w, "rotate secret", err)
		return
	}
	a.opt.Changed(id)
	a.opt.Logger.Info("access key secret rotated", "id", id, "overlap", overlap.String())
	writeJSON(w, http.StatusOK, rotateAnswer{ID: k.ID, Secret: secret, PreviousSecretExpiresAt: timeOrNil(k.PrevSecretExpiresAt)})
}
