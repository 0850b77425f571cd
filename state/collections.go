package state

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// Errors of the collection store (compare with errors.Is).
var (
	// ErrNoCollection: no collection of that storage has that UUID (or it
	// is trashed and trashed ones were not asked for, or past its delete
	// time).
	ErrNoCollection = errors.New("no such collection")
	// ErrNameTaken: another live collection of the same storage and owner
	// has that name.
	ErrNameTaken = errors.New("a collection with this name already exists for this owner")
)

// Collection is an Arvados collection as stored: its manifest text is
// kept without signatures (every locator is hash+size), and it belongs to
// exactly one storage, which every look-up names.
type Collection struct {
	UUID             string
	Storage          string
	OwnerUUID        string
	Name             string
	Description      string
	ManifestText     string // stripped: locators are hash+size only
	PortableDataHash string
	// ReplicationDesired: 0 means unset (null in the API).
	ReplicationDesired    int
	StorageClassesDesired []string
	Properties            json.RawMessage // a JSON object
	FileCount             int64
	FileSizeTotal         int64
	CreatedAt             time.Time
	ModifiedAt            time.Time
	ModifiedByUserUUID    string
	// TrashAt: from then on the collection is trashed (zero: never);
	// DeleteAt: from then on it is gone, even for include-trash look-ups.
	TrashAt  time.Time
	DeleteAt time.Time
	// Version increases with every update.
	Version int64
}

// Trashed reports whether c is trashed at now.
func (c *Collection) Trashed(now time.Time) bool {
	return !c.TrashAt.IsZero() && !now.Before(c.TrashAt)
}

// AttrType is the type of a filterable collection attribute.
type AttrType int

// Attribute types.
const (
	AttrString AttrType = iota
	AttrTime
	AttrInt
	AttrBool
)

// CollectionAttrs are the attributes a CollectionQuery may filter and
// order on, with their types (values of AttrTime filters are time.Time,
// of AttrInt int64, of AttrBool bool, of AttrString string).
var CollectionAttrs = map[string]AttrType{
	"uuid":                AttrString,
	"owner_uuid":          AttrString,
	"name":                AttrString,
	"description":         AttrString,
	"portable_data_hash":  AttrString,
	"created_at":          AttrTime,
	"modified_at":         AttrTime,
	"trash_at":            AttrTime,
	"delete_at":           AttrTime,
	"replication_desired": AttrInt,
	"file_count":          AttrInt,
	"file_size_total":     AttrInt,
	"version":             AttrInt,
	"is_trashed":          AttrBool,
}

// Filter operators a CollectionQuery supports.
const (
	OpEq      = "="
	OpNe      = "!="
	OpLt      = "<"
	OpLe      = "<="
	OpGt      = ">"
	OpGe      = ">="
	OpLike    = "like"  // SQL LIKE with % and _, case-sensitive
	OpILike   = "ilike" // the same, case-insensitive (ASCII)
	OpIn      = "in"
	OpNotIn   = "not in"
	OpIsNull  = "is_null" // the attribute is unset (zero time, 0, "")
	OpNotNull = "not_null"
)

// Filter is one condition: Attr (a key of CollectionAttrs) Op Values.
// =, !=, <, <=, >, >=, like and ilike take one value; in and not in any
// number (in of none matches nothing); is_null and not_null none. like
// and ilike apply to AttrString attributes only.
type Filter struct {
	Attr   string
	Op     string
	Values []any
}

// Order is one sort key.
type Order struct {
	Attr string
	Desc bool
}

// CollectionQuery selects collections of one storage.
type CollectionQuery struct {
	Storage      string // required
	Filters      []Filter
	IncludeTrash bool // also collections trashed at Now (never those past DeleteAt)
	Order        []Order
	Limit        int // at most this many (0: none)
	Offset       int
	Now          time.Time // what "trashed" and "deleted" are judged against
}

// CollectionStore keeps collections. Contract for every engine:
//   - Every method is confined to one storage: a collection of another
//     storage is never returned, changed or counted, and a look-up of one
//     is indistinguishable from a look-up of a UUID that never existed
//     (ErrNoCollection).
//   - CreateCollection stores c (Version 1). If a live collection (not
//     trashed at c.CreatedAt) of the same storage and owner has c.Name
//     (names "" never clash), it returns ErrNameTaken, unless
//     ensureUniqueName: then the name becomes c.Name + " (" + c.CreatedAt
//     in UTC as 2006-01-02T15:04:05.000Z + ")" (ErrNameTaken if that
//     clashes too). It returns the stored collection. UUIDs are the
//     caller's; a duplicate UUID is an error.
//   - GetCollection returns the collection with uuid in storage, unless it
//     is past DeleteAt at now, or trashed at now and !includeTrash
//     (ErrNoCollection).
//   - ListCollections returns the collections of q.Storage that match
//     every filter, live ones (plus trashed ones with IncludeTrash; never
//     those past DeleteAt), sorted by q.Order then by uuid, limited, and
//     how many match without Limit and Offset. Filters on attributes not
//     in CollectionAttrs, or values of the wrong type, are an error.
//   - UpdateCollection reads the collection (as GetCollection with
//     includeTrash, at now), calls f on a copy and stores the result
//     (Version+1) in one transaction; the name rule of CreateCollection
//     applies (without renaming); UUID, Storage and CreatedAt cannot
//     change; f's error aborts and is returned as is.
type CollectionStore interface {
	CreateCollection(ctx context.Context, c Collection, ensureUniqueName bool) (Collection, error)
	GetCollection(ctx context.Context, storage, uuid string, includeTrash bool, now time.Time) (Collection, error)
	ListCollections(ctx context.Context, q CollectionQuery) (items []Collection, matched int, err error)
	UpdateCollection(ctx context.Context, storage, uuid string, now time.Time, f func(*Collection) error) (Collection, error)
}

// UniqueNameSuffix is the suffix CreateCollection appends on a name clash
// with ensureUniqueName.
func UniqueNameSuffix(created time.Time) string {
	return " (" + created.UTC().Format("2006-01-02T15:04:05.000Z") + ")"
}
