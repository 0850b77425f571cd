package arvapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/keepgate/keepgate/blockstore"
	"github.com/keepgate/keepgate/internal/httpserver"
	"github.com/keepgate/keepgate/state"
)

// pdhRe: a portable data hash, possibly with hints after the size (which
// a look-up ignores).
var pdhRe = regexp.MustCompile(`^([0-9a-f]{32}\+[0-9]+)(\+[A-Z][A-Za-z0-9@_-]*)*$`)

const collectionInfix = "4zz18"

// stateErr turns the store's errors into the API's: unknown (or another
// storage's) 404, a name clash 422, a database failure 503 (logged).
func (s *Server) stateErr(r *http.Request, err error, id string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, state.ErrNoCollection):
		return notFound("collection %s not found", truncate(id, 60))
	case errors.Is(err, state.ErrNameTaken):
		return unprocessable("name has already been taken: another collection of this owner has that name (ensure_unique_name=true makes it unique)")
	}
	if k := blockstore.KindOf(err); k == blockstore.KindCanceled || k == blockstore.KindTimeout {
		return err
	}
	s.opt.Logger.Error("collections: the state database failed", "request_id", httpserver.RequestIDFrom(r.Context()), "error", err.Error())
	return &blockstore.Error{Op: "arvapi", Kind: blockstore.KindUnavailable, Msg: "collections cannot be read or saved right now (the state database failed); retry shortly", Err: err}
}

// collectionUUID checks that id is a collection UUID of this cluster:
// 422 when it is not a collection UUID at all, 404 when it belongs to
// another cluster (keepgate knows none).
func (s *Server) collectionUUID(id string) error {
	if !uuidRe.MatchString(id) || id[6:11] != collectionInfix {
		return unprocessable("%q is not a collection UUID (%s-%s-…) or portable data hash (md5+size)", truncate(id, 60), s.opt.UUIDPrefix, collectionInfix)
	}
	if id[:5] != s.opt.UUIDPrefix {
		return notFound("collection %s not found", id)
	}
	return nil
}

func (s *Server) getCollection(r *http.Request, c *Caller) (any, error) {
	id := r.PathValue("id")
	now := s.now()
	includeTrash, err := boolParam(r, "include_trash")
	if err != nil {
		return nil, err
	}
	if m := pdhRe.FindStringSubmatch(id); m != nil {
		return s.getByPDH(r, c, m[1], now)
	}
	if err := s.collectionUUID(id); err != nil {
		return nil, err
	}
	col, err := s.opt.Collections.GetCollection(r.Context(), c.Storage, id, includeTrash, now)
	if err != nil {
		return nil, s.stateErr(r, err, id)
	}
	// select is not applied to a single record: a Go FS re-GETs with
	// select=[manifest_text…] and reads what it asked for either way.
	return s.recordOf(c, col, now), nil
}

// getByPDH answers as Arvados does for a portable data hash: the content
// of the newest live collection with it, named by the hash.
func (s *Server) getByPDH(r *http.Request, c *Caller, pdh string, now time.Time) (any, error) {
	items, _, err := s.opt.Collections.ListCollections(r.Context(), state.CollectionQuery{Storage: c.Storage, Now: now, Limit: 1,
		Filters: []state.Filter{{Attr: "portable_data_hash", Op: state.OpEq, Values: []any{pdh}}},
		Order:   []state.Order{{Attr: "modified_at", Desc: true}}})
	if err != nil {
		return nil, s.stateErr(r, err, pdh)
	}
	if len(items) == 0 {
		return nil, notFound("collection %s not found", pdh)
	}
	rec := s.recordOf(c, items[0], now)
	rec.UUID, rec.CurrentVersionUUID, rec.Name, rec.OwnerUUID, rec.Description, rec.Properties = pdh, pdh, nil, "", nil, json.RawMessage("{}")
	return rec, nil
}

func (s *Server) listCollections(r *http.Request, c *Caller) (any, error) {
	now := s.now()
	q := state.CollectionQuery{Storage: c.Storage, Now: now}
	countNone, sel, err := listQuery(r, &q)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit == 0 { // only the count (items_available); the store's 0 means no limit
		q.Limit = 1
	}
	items, matched, err := s.opt.Collections.ListCollections(r.Context(), q)
	if err != nil {
		return nil, s.stateErr(r, err, "")
	}
	if limit == 0 {
		items = nil
	}
	out := make([]any, 0, len(items))
	for _, col := range items {
		out = append(out, selected(s.recordOf(c, col, now), sel))
	}
	list := jmap{"kind": "arvados#collectionList", "etag": "", "self_link": "", "offset": q.Offset, "limit": limit, "items": out}
	if !countNone {
		list["items_available"] = matched
	}
	return list, nil
}

func (s *Server) createCollection(r *http.Request, c *Caller) (any, error) {
	a, err := s.readAttrs(r)
	if err != nil {
		return nil, err
	}
	ensure, err := boolParam(r, "ensure_unique_name")
	if err != nil {
		return nil, err
	}
	sel, err := selectParam(r)
	if err != nil {
		return nil, err
	}
	now := s.now()
	me := s.userUUID(c)
	if _, ok := a["manifest_text"]; !ok {
		a["manifest_text"] = json.RawMessage(`""`)
	}
	ch, err := s.manifestOf(r, c, a)
	if err != nil {
		return nil, err
	}
	col := state.Collection{UUID: s.newUUID(collectionInfix), Storage: c.Storage, OwnerUUID: me, CreatedAt: now, ModifiedAt: now,
		ModifiedByUserUUID: me, StorageClassesDesired: s.defaultClasses(c), Properties: json.RawMessage("{}")}
	if err := s.apply(c, &col, a, ch, now); err != nil {
		return nil, err
	}
	saved, err := s.opt.Collections.CreateCollection(r.Context(), col, ensure)
	if err != nil {
		return nil, s.stateErr(r, err, col.UUID)
	}
	s.logChange(r, c, "created", saved)
	return selected(s.recordOf(c, saved, now), sel), nil
}

func (s *Server) updateCollection(r *http.Request, c *Caller) (any, error) {
	id := r.PathValue("id")
	if err := s.collectionUUID(id); err != nil {
		return nil, err
	}
	a, err := s.readAttrs(r)
	if err != nil {
		return nil, err
	}
	sel, err := selectParam(r)
	if err != nil {
		return nil, err
	}
	// The manifest is checked (signatures, blocks) before the update's
	// transaction: the presence checks go to the stores.
	ch, err := s.manifestOf(r, c, a)
	if err != nil {
		return nil, err
	}
	now := s.now()
	saved, err := s.opt.Collections.UpdateCollection(r.Context(), c.Storage, id, now, func(col *state.Collection) error {
		col.ModifiedAt, col.ModifiedByUserUUID = now, s.userUUID(c)
		return s.apply(c, col, a, ch, now)
	})
	if err != nil {
		return nil, s.stateErr(r, err, id)
	}
	s.logChange(r, c, "updated", saved)
	return selected(s.recordOf(c, saved, now), sel), nil
}

// deleteCollection trashes the collection now (it stays retrievable with
// include_trash for TrashLifetime) and answers its record.
func (s *Server) deleteCollection(r *http.Request, c *Caller) (any, error) {
	id := r.PathValue("id")
	if err := s.collectionUUID(id); err != nil {
		return nil, err
	}
	now := s.now()
	saved, err := s.opt.Collections.UpdateCollection(r.Context(), c.Storage, id, now, func(col *state.Collection) error {
		if col.Trashed(now) {
			return state.ErrNoCollection // already trashed: as Arvados, 404
		}
		col.TrashAt, col.DeleteAt = now, now.Add(s.opt.TrashLifetime)
		col.ModifiedAt, col.ModifiedByUserUUID = now, s.userUUID(c)
		return nil
	})
	if err != nil {
		return nil, s.stateErr(r, err, id)
	}
	s.logChange(r, c, "trashed", saved)
	return s.recordOf(c, saved, now), nil
}

// logChange logs a saved collection: who, which, its content (never a
// signature: the stored text has none, and it is not logged).
func (s *Server) logChange(r *http.Request, c *Caller, what string, col state.Collection) {
	s.opt.Logger.Info("collection "+what, "request_id", httpserver.RequestIDFrom(r.Context()), "uuid", col.UUID, "storage", col.Storage,
		"principal_kind", c.Kind, "principal", c.ID, "portable_data_hash", col.PortableDataHash, "files", col.FileCount, "bytes", col.FileSizeTotal)
}

// manifestOf checks the manifest_text member, if any (nil when absent).
func (s *Server) manifestOf(r *http.Request, c *Caller, a attrs) (*checked, error) {
	text, ok, err := a.str("manifest_text")
	if err != nil || !ok {
		return nil, err
	}
	ch, err := s.checkManifest(r.Context(), c, text)
	if err != nil {
		return nil, err
	}
	return &ch, nil
}

func (s *Server) defaultClasses(c *Caller) []string {
	if len(c.Classes) > 0 {
		return []string{c.Classes[0]}
	}
	return []string{"default"}
}

// apply sets the writable attributes a names on col (a checked manifest
// in ch). Read-only and unknown attributes are ignored, as the Go SDK
// sends whole records.
func (s *Server) apply(c *Caller, col *state.Collection, a attrs, ch *checked, now time.Time) error {
	if ch != nil {
		col.ManifestText, col.PortableDataHash, col.FileCount, col.FileSizeTotal = ch.stripped, ch.pdh, ch.files, ch.bytes
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"name", &col.Name}, {"description", &col.Description}} {
		v, ok, err := a.str(f.name)
		if err != nil {
			return err
		}
		if ok && (strings.ContainsRune(v, 0) || !utf8.ValidString(v)) {
			// Neither engine may be asked to store them (PostgreSQL cannot).
			return unprocessable("%s: want UTF-8 text without NUL characters", f.name)
		}
		if ok {
			*f.dst = v
		}
	}
	if owner, ok, err := a.str("owner_uuid"); err != nil {
		return err
	} else if ok && owner != "" && owner != s.userUUID(c) && owner != col.OwnerUUID {
		return unprocessable("owner_uuid %s: on keepgate a collection belongs to its creator (users/current, %s); there are no projects", truncate(owner, 40), s.userUUID(c))
	}
	if raw, ok := a["replication_desired"]; ok {
		var n *int
		if err := json.Unmarshal(raw, &n); err != nil || (n != nil && *n < 0) {
			return unprocessable("replication_desired: want a number ≥ 1, or null")
		}
		col.ReplicationDesired = 0
		if n != nil {
			col.ReplicationDesired = *n
		}
	}
	if raw, ok := a["storage_classes_desired"]; ok {
		var classes []string
		if err := json.Unmarshal(raw, &classes); err != nil {
			return unprocessable("storage_classes_desired: want an array of class names, or null")
		}
		for _, cl := range classes {
			if len(c.Classes) > 0 && !slices.Contains(c.Classes, cl) {
				return unprocessable("storage class %q is not offered by storage %s; use one of: %s", truncate(cl, 40), c.Storage, strings.Join(c.Classes, ", "))
			}
		}
		col.StorageClassesDesired = classes
		if classes == nil {
			col.StorageClassesDesired = s.defaultClasses(c)
		}
	}
	if raw, ok := a["properties"]; ok {
		var p map[string]any
		if err := json.Unmarshal(raw, &p); err != nil {
			return unprocessable("properties: want a JSON object, or null")
		}
		col.Properties = json.RawMessage("{}")
		if p != nil {
			col.Properties = raw
		}
	}
	return s.applyTrash(col, a, now)
}

// applyTrash sets trash_at, delete_at and is_trashed: a trash_at without
// delete_at deletes TrashLifetime after it; is_trashed true trashes now,
// false restores.
func (s *Server) applyTrash(col *state.Collection, a attrs, now time.Time) error {
	parse := func(name string) (time.Time, bool, error) {
		v, ok, err := a.str(name)
		if err != nil || !ok || v == "" {
			return time.Time{}, ok, err
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return t, true, unprocessable("%s %q: want an RFC 3339 time, e.g. 2026-01-02T15:04:05.000000Z", name, truncate(v, 40))
		}
		return t, true, nil
	}
	trash, setTrash, err := parse("trash_at")
	if err != nil {
		return err
	}
	del, setDelete, err := parse("delete_at")
	if err != nil {
		return err
	}
	if setTrash {
		col.TrashAt = trash
		if !setDelete && !trash.IsZero() {
			col.DeleteAt = trash.Add(s.opt.TrashLifetime)
		}
		if trash.IsZero() {
			col.DeleteAt = time.Time{}
		}
	}
	if setDelete {
		col.DeleteAt = del
	}
	if raw, ok := a["is_trashed"]; ok {
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return unprocessable("is_trashed: want true or false")
		}
		switch {
		case b && !col.Trashed(now):
			col.TrashAt, col.DeleteAt = now, now.Add(s.opt.TrashLifetime)
		case !b && col.Trashed(now):
			col.TrashAt, col.DeleteAt = time.Time{}, time.Time{}
		}
	}
	if !col.DeleteAt.IsZero() && !col.TrashAt.IsZero() && col.DeleteAt.Before(col.TrashAt) {
		return unprocessable("delete_at must not be before trash_at")
	}
	return nil
}
