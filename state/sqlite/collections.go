package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/internal/sqlrow"
)

var _ state.CollectionStore = (*DB)(nil)

const collColumns = `uuid, storage, owner_uuid, name, description, manifest_text, portable_data_hash, replication_desired,
	storage_classes_desired, properties, file_count, file_size_total, created_at, modified_at, modified_by_user_uuid,
	trash_at, delete_at, version`

func collArgs(c state.Collection) []any {
	classes, _ := json.Marshal(nonNil(c.StorageClassesDesired))
	props := string(c.Properties)
	if props == "" {
		props = "{}"
	}
	return []any{c.UUID, c.Storage, c.OwnerUUID, c.Name, c.Description, c.ManifestText, c.PortableDataHash, c.ReplicationDesired,
		string(classes), props, c.FileCount, c.FileSizeTotal, sqlrow.Nanos(c.CreatedAt), sqlrow.Nanos(c.ModifiedAt), c.ModifiedByUserUUID,
		sqlrow.Nanos(c.TrashAt), sqlrow.Nanos(c.DeleteAt), c.Version}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func scanColl(s sqlrow.Row) (state.Collection, error) {
	var c state.Collection
	var classes, props string
	var created, modified, trash, del int64
	err := s.Scan(&c.UUID, &c.Storage, &c.OwnerUUID, &c.Name, &c.Description, &c.ManifestText, &c.PortableDataHash, &c.ReplicationDesired,
		&classes, &props, &c.FileCount, &c.FileSizeTotal, &created, &modified, &c.ModifiedByUserUUID, &trash, &del, &c.Version)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal([]byte(classes), &c.StorageClassesDesired); err != nil {
		return c, fmt.Errorf("collection %s: storage_classes_desired: %w", c.UUID, err)
	}
	c.Properties = json.RawMessage(props)
	c.CreatedAt, c.ModifiedAt, c.TrashAt, c.DeleteAt = sqlrow.FromNanos(created), sqlrow.FromNanos(modified), sqlrow.FromNanos(trash), sqlrow.FromNanos(del)
	return c, nil
}

// live is the condition "not deleted at ?, and (with trash excluded) not
// trashed at ?": its arguments are now, includeTrash, now.
const live = `(delete_at = 0 OR delete_at > ?) AND (? OR trash_at = 0 OR trash_at > ?)`

func liveArgs(now time.Time, includeTrash bool) []any {
	return []any{now.UnixNano(), includeTrash, now.UnixNano()}
}

type querier interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// nameTaken reports whether another live collection of c's storage and
// owner is called name.
func nameTaken(ctx context.Context, q querier, c state.Collection, name string, at time.Time) (bool, error) {
	if name == "" {
		return false, nil
	}
	var n int
	err := q.QueryRowContext(ctx, `SELECT count(*) FROM collections WHERE storage = ? AND owner_uuid = ? AND name = ? AND uuid != ? AND `+live,
		append([]any{c.Storage, c.OwnerUUID, name, c.UUID}, liveArgs(at, false)...)...).Scan(&n)
	return n > 0, err
}

// CreateCollection implements state.CollectionStore.
func (d *DB) CreateCollection(ctx context.Context, c state.Collection, ensureUniqueName bool) (state.Collection, error) {
	c.Version = 1
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return c, d.wrap("create collection", err)
	}
	defer tx.Rollback()
	taken, err := nameTaken(ctx, tx, c, c.Name, c.CreatedAt)
	if err != nil {
		return c, d.wrap("create collection", err)
	}
	if taken && ensureUniqueName {
		c.Name += state.UniqueNameSuffix(c.CreatedAt)
		if taken, err = nameTaken(ctx, tx, c, c.Name, c.CreatedAt); err != nil {
			return c, d.wrap("create collection", err)
		}
	}
	if taken {
		return c, state.ErrNameTaken
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO collections (`+collColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, collArgs(c)...); err != nil {
		var se *sqlite.Error
		if errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY {
			return c, fmt.Errorf("state file %s: create collection: uuid %s exists", d.path, c.UUID)
		}
		return c, d.wrap("create collection", err)
	}
	return c, d.wrap("create collection", tx.Commit())
}

// GetCollection implements state.CollectionStore.
func (d *DB) GetCollection(ctx context.Context, storage, uuid string, includeTrash bool, now time.Time) (state.Collection, error) {
	c, err := scanColl(d.db.QueryRowContext(ctx, `SELECT `+collColumns+` FROM collections WHERE uuid = ? AND storage = ? AND `+live,
		append([]any{uuid, storage}, liveArgs(now, includeTrash)...)...))
	if errors.Is(err, sql.ErrNoRows) {
		return c, state.ErrNoCollection
	}
	return c, d.wrap("get collection", err)
}

// ListCollections implements state.CollectionStore.
func (d *DB) ListCollections(ctx context.Context, q state.CollectionQuery) ([]state.Collection, int, error) {
	where := []string{"storage = ?", live}
	args := append([]any{q.Storage}, liveArgs(q.Now, q.IncludeTrash)...)
	for _, f := range q.Filters {
		cond, fargs, err := filterSQL(f, q.Now)
		if err != nil {
			return nil, 0, err
		}
		where = append(where, cond)
		args = append(args, fargs...)
	}
	cond := strings.Join(where, " AND ")
	var matched int
	if err := d.db.QueryRowContext(ctx, `SELECT count(*) FROM collections WHERE `+cond, args...).Scan(&matched); err != nil {
		return nil, 0, d.wrap("list collections", err)
	}
	var order []string
	for _, o := range q.Order {
		col, _, err := column(o.Attr, q.Now)
		if err != nil {
			return nil, 0, err
		}
		if o.Desc {
			col += " DESC"
		}
		order = append(order, col)
	}
	order = append(order, "uuid")
	sqlText := `SELECT ` + collColumns + ` FROM collections WHERE ` + cond + ` ORDER BY ` + strings.Join(order, ", ")
	limit := q.Limit
	if limit <= 0 {
		limit = -1
	}
	sqlText += ` LIMIT ? OFFSET ?`
	args = append(args, limit, max(0, q.Offset))
	rows, err := d.db.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, 0, d.wrap("list collections", err)
	}
	defer rows.Close()
	out, err := sqlrow.Collect(rows, scanColl)
	if err != nil {
		return nil, 0, d.wrap("list collections", err)
	}
	return out, matched, nil
}

// UpdateCollection implements state.CollectionStore.
func (d *DB) UpdateCollection(ctx context.Context, storage, uuid string, now time.Time, f func(*state.Collection) error) (state.Collection, error) {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return state.Collection{}, d.wrap("update collection", err)
	}
	defer tx.Rollback()
	c, err := scanColl(tx.QueryRowContext(ctx, `SELECT `+collColumns+` FROM collections WHERE uuid = ? AND storage = ? AND `+live,
		append([]any{uuid, storage}, liveArgs(now, true)...)...))
	if errors.Is(err, sql.ErrNoRows) {
		return c, state.ErrNoCollection
	}
	if err != nil {
		return c, d.wrap("update collection", err)
	}
	before := c
	if err := f(&c); err != nil {
		return before, err
	}
	c.UUID, c.Storage, c.CreatedAt, c.Version = before.UUID, before.Storage, before.CreatedAt, before.Version+1
	if !c.Trashed(now) && (c.Name != before.Name || c.OwnerUUID != before.OwnerUUID || before.Trashed(now)) {
		taken, err := nameTaken(ctx, tx, c, c.Name, now)
		if err != nil {
			return before, d.wrap("update collection", err)
		}
		if taken {
			return before, state.ErrNameTaken
		}
	}
	a := collArgs(c)
	_, err = tx.ExecContext(ctx, `UPDATE collections SET owner_uuid=?, name=?, description=?, manifest_text=?, portable_data_hash=?,
		replication_desired=?, storage_classes_desired=?, properties=?, file_count=?, file_size_total=?, modified_at=?,
		modified_by_user_uuid=?, trash_at=?, delete_at=?, version=? WHERE uuid=? AND storage=?`,
		append(append(append([]any{}, a[2:12]...), a[13:]...), uuid, storage)...)
	if err != nil {
		return before, d.wrap("update collection", err)
	}
	return c, d.wrap("update collection", tx.Commit())
}

// column is the SQL expression of a filterable attribute.
func column(attr string, now time.Time) (string, state.AttrType, error) {
	t, ok := state.CollectionAttrs[attr]
	if !ok {
		return "", 0, fmt.Errorf("collections cannot be filtered or ordered by %q", attr)
	}
	if attr == "is_trashed" {
		return fmt.Sprintf("(trash_at != 0 AND trash_at <= %d)", now.UnixNano()), t, nil
	}
	return attr, t, nil
}

// filterSQL renders one filter as a condition and its arguments.
func filterSQL(f state.Filter, now time.Time) (string, []any, error) {
	col, typ, err := column(f.Attr, now)
	if err != nil {
		return "", nil, err
	}
	vals := make([]any, len(f.Values))
	for i, v := range f.Values {
		if vals[i], err = sqlrow.FilterValue(f.Attr, typ, v); err != nil {
			return "", nil, err
		}
	}
	one := func(sqlOp string) (string, []any, error) {
		if len(vals) != 1 {
			return "", nil, fmt.Errorf("filter %s %s takes one value", f.Attr, f.Op)
		}
		return col + " " + sqlOp + " ?", vals, nil
	}
	switch f.Op {
	case state.OpEq, state.OpLt, state.OpLe, state.OpGt, state.OpGe:
		return one(f.Op)
	case state.OpNe:
		return one("!=")
	case state.OpLike, state.OpILike:
		if typ != state.AttrString {
			return "", nil, fmt.Errorf("filter %s %s: %s is not a text attribute", f.Attr, f.Op, f.Attr)
		}
		if len(vals) != 1 {
			return "", nil, fmt.Errorf("filter %s %s takes one value", f.Attr, f.Op)
		}
		if f.Op == state.OpILike { // SQLite's LIKE ignores ASCII case
			return col + ` LIKE ? ESCAPE '\'`, vals, nil
		}
		return col + " GLOB ?", []any{likeToGlob(vals[0].(string))}, nil
	case state.OpIn, state.OpNotIn:
		if len(vals) == 0 {
			if f.Op == state.OpIn {
				return "0", nil, nil
			}
			return "1", nil, nil
		}
		neg := ""
		if f.Op == state.OpNotIn {
			neg = "NOT "
		}
		return col + " " + neg + "IN (" + strings.TrimSuffix(strings.Repeat("?,", len(vals)), ",") + ")", vals, nil
	case state.OpIsNull, state.OpNotNull:
		zero := "0"
		if typ == state.AttrString {
			zero = "''"
		}
		if f.Op == state.OpIsNull {
			return col + " = " + zero, nil, nil
		}
		return col + " != " + zero, nil, nil
	}
	return "", nil, fmt.Errorf("unsupported filter operator %q", f.Op)
}

// likeToGlob turns a LIKE pattern (%, _, backslash escapes) into the
// equivalent case-sensitive GLOB pattern.
func likeToGlob(p string) string {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		switch c := p[i]; c {
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(globLiteral(p[i]))
			}
		case '%':
			b.WriteByte('*')
		case '_':
			b.WriteByte('?')
		default:
			b.WriteString(globLiteral(c))
		}
	}
	return b.String()
}

func globLiteral(c byte) string {
	switch c {
	case '*', '?', '[':
		return "[" + string(c) + "]"
	}
	return string(c)
}
