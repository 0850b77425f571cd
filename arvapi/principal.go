package arvapi

import (
	"crypto/rand"
	"crypto/sha256"
	"math/big"
	"net/http"
	"regexp"
	"strings"
	"time"
)

var (
	clusterRe = regexp.MustCompile(`^[a-z0-9]{5}$`)
	uuidRe    = regexp.MustCompile(`^[a-z0-9]{5}-[a-z0-9]{5}-[a-z0-9]{15}$`)
)

const base36 = "0123456789abcdefghijklmnopqrstuvwxyz"

// stableUUID is prefix-infix-<15 base-36 digits of SHA-256(parts)>: the
// same principal always gets the same UUID.
func (s *Server) stableUUID(infix string, parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "\x00")))
	n := new(big.Int).SetBytes(sum[:])
	b := make([]byte, 15)
	m := big.NewInt(36)
	for i := range b {
		var d big.Int
		n.DivMod(n, m, &d)
		b[i] = base36[d.Int64()]
	}
	return s.opt.UUIDPrefix + "-" + infix + "-" + string(b)
}

// newUUID is prefix-infix-<15 random base-36 digits>.
func (s *Server) newUUID(infix string) string {
	b := make([]byte, 15)
	m := big.NewInt(36)
	for i := range b {
		d, _ := rand.Int(rand.Reader, m)
		b[i] = base36[d.Int64()]
	}
	return s.opt.UUIDPrefix + "-" + infix + "-" + string(b)
}

func (s *Server) userUUID(c *Caller) string { return s.stableUUID("tpzed", "user", c.Kind, c.ID) }

func (s *Server) rootUUID() string { return s.opt.UUIDPrefix + "-tpzed-000000000000000" }

// user is the caller's principal as an Arvados user record (Go-safe
// types: no empty timestamps).
func (s *Server) user(c *Caller) jmap {
	return jmap{"kind": "arvados#user", "etag": "", "uuid": s.userUUID(c), "owner_uuid": s.rootUUID(),
		"username": username(c.ID), "full_name": c.ID, "first_name": c.ID, "last_name": "", "email": "", "identity_url": "",
		"is_active": true, "is_admin": false, "is_invited": true, "prefs": jmap{}, "writable_by": []string{s.rootUUID()},
		"can_write": c.CanWrite, "can_manage": false, "created_at": nil, "modified_at": nil}
}

// username: the principal id reduced to what Arvados allows in a username.
func username(id string) string {
	var b strings.Builder
	for _, r := range id {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

func (s *Server) currentUser(_ *http.Request, c *Caller) (any, error) { return s.user(c), nil }

func (s *Server) getUser(r *http.Request, c *Caller) (any, error) {
	if id := r.PathValue("uuid"); id != s.userUUID(c) {
		return nil, notFound("user %s not found: keepgate knows only the caller's own user (users/current)", truncate(id, 40))
	}
	return s.user(c), nil
}

func (s *Server) getGroup(r *http.Request, _ *Caller) (any, error) {
	return nil, notFound("group %s not found: keepgate has no projects or groups; collections belong to the caller's user (users/current)", truncate(r.PathValue("uuid"), 40))
}

func (s *Server) currentAuthorization(_ *http.Request, c *Caller) (any, error) {
	scopes := []string{"all"}
	if !c.CanWrite {
		scopes = []string{"GET /", "HEAD /"}
	}
	var exp any
	if !c.Expires.IsZero() {
		exp = formatTime(c.Expires)
	}
	return jmap{"kind": "arvados#apiClientAuthorization", "etag": "", "uuid": s.stableUUID("gj3su", "token", c.Kind, c.ID),
		"owner_uuid": s.userUUID(c), "scopes": scopes, "expires_at": exp, "created_at": nil}, nil
}

// config is the exported configuration the SDKs read: StorageClasses
// (the names with Default: true go out as X-Keep-Storage-Classes) — the
// caller's storage's when the token is known, else the default storage's.
func (s *Server) config(r *http.Request) (any, error) {
	classes, replicas := s.opt.DefaultClasses, s.opt.DefaultReplicas
	if c, err := s.opt.Keep.Authenticate(r); err == nil {
		classes, replicas = c.Classes, c.DefaultReplicas
	}
	sc := jmap{}
	if len(classes) == 0 {
		sc["default"] = jmap{"Default": true, "Priority": 0}
	}
	for i, name := range classes {
		sc[name] = jmap{"Default": i == 0, "Priority": 0}
	}
	root := s.external(r).root()
	return jmap{"ClusterID": s.opt.UUIDPrefix, "StorageClasses": sc,
		"Collections": jmap{"DefaultReplication": replicas, "BlobSigning": true, "BlobSigningTTL": s.opt.SignatureTTL.String(), "TrashLifetime": s.opt.TrashLifetime.String()},
		"API":         jmap{"MaxItemsPerResponse": maxLimit, "MaxRequestSize": s.opt.MaxRequestSize},
		"Services":    jmap{"Controller": jmap{"ExternalURL": root}, "Keepproxy": jmap{"ExternalURL": root}}}, nil
}

// keepServices lists keepgate itself, as a proxy, at the host, port and
// TLS flag the client used (never the keepstores).
func (s *Server) keepServices(r *http.Request, _ *Caller) (any, error) {
	e := s.external(r)
	svc := jmap{"kind": "arvados#keepService", "etag": "", "uuid": s.stableUUID("bi6l4", "proxy", e.Host), "owner_uuid": s.rootUUID(),
		"service_host": e.Host, "service_port": e.Port, "service_ssl_flag": e.TLS, "service_type": "proxy", "read_only": false}
	return jmap{"kind": "arvados#keepServiceList", "etag": "", "offset": 0, "limit": 1, "items": []jmap{svc}, "items_available": 1}, nil
}

// formatTime is Arvados' timestamp form (RFC 3339, UTC, nanoseconds).
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }
