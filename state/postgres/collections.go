package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/internal/sqlrow"
)

// Collections (state.CollectionStore), as the SQLite engine's but for
// several proxies on one database:
//   - UpdateCollection locks the row (SELECT … FOR UPDATE), so concurrent
//     updates of one collection queue.
//   - Whatever makes a live collection carry a name (a create, a rename,
//     a change of owner, a restore from the trash) first takes the
//     transaction-scoped advisory lock of (storage, owner, name), then
//     checks the name and writes: two proxies cannot both find a name free
//     and both take it. The lock is released at commit, after which the
//     next holder's check (a new statement, so a new snapshot in READ
//     COMMITTED) sees the row. Hash collisions between different names
//     only make them wait on each other.
//
// Text columns are COLLATE "C" (see the migration): ordering and <, >
// are byte order, LIKE is case-sensitive and ILIKE folds ASCII only,
// whatever the database's locale.

var _ state.CollectionStore = (*DB)(nil)

// nameLockClass is the first key of the name locks' two-key advisory
// locks ("kgcn"); the two-key space does not overlap goose's one-key
// migration lock.
const nameLockClass int32 = 0x6b67636e

const collColumns = `uuid, storage, owner_uuid, name, description, manifest_text, portable_data_hash, replication_desired,
	storage_classes_desired, properties, file_count, file_size_total, created_at, modified_at, modified_by_user_uuid,
	trash_at, delete_at, version`

func collArgs(c state.Collection) []any {
	classes := c.StorageClassesDesired
	if classes == nil {
		classes = []string{}
	}
	props := string(c.Properties)
	if props == "" {
		props = "{}"
	}
	return []any{c.UUID, c.Storage, c.OwnerUUID, c.Name, c.Description, c.ManifestText, c.PortableDataHash, c.ReplicationDesired,
		classes, props, c.FileCount, c.FileSizeTotal, sqlrow.Nanos(c.CreatedAt), sqlrow.Nanos(c.ModifiedAt), c.ModifiedByUserUUID,
		sqlrow.Nanos(c.TrashAt), sqlrow.Nanos(c.DeleteAt), c.Version}
}

// checkText refuses text PostgreSQL cannot store (NUL characters, or
// bytes that are not UTF-8) before it reaches the server.
func checkText(c state.Collection) error {
	fields := []struct{ name, v string }{{"uuid", c.UUID}, {"storage", c.Storage}, {"owner_uuid", c.OwnerUUID}, {"name", c.Name},
		{"description", c.Description}, {"manifest_text", c.ManifestText}, {"portable_data_hash", c.PortableDataHash},
		{"modified_by_user_uuid", c.ModifiedByUserUUID}}
	for _, cl := range c.StorageClassesDesired {
		fields = append(fields, struct{ name, v string }{"storage_classes_desired", cl})
	}
	for _, f := range fields {
		if strings.IndexByte(f.v, 0) >= 0 || !utf8.ValidString(f.v) {
			return fmt.Errorf("collection %s: %s has a NUL character or is not UTF-8, which PostgreSQL text cannot hold", c.UUID, f.name)
		}
	}
	return nil
}

func scanColl(row sqlrow.Row) (state.Collection, error) {
	var c state.Collection
	var props string
	var created, modified, trash, del int64
	err := row.Scan(&c.UUID, &c.Storage, &c.OwnerUUID, &c.Name, &c.Description, &c.ManifestText, &c.PortableDataHash, &c.ReplicationDesired,
		&c.StorageClassesDesired, &props, &c.FileCount, &c.FileSizeTotal, &created, &modified, &c.ModifiedByUserUUID, &trash, &del, &c.Version)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, state.ErrNoCollection
	}
	if err != nil {
		return c, err
	}
	if c.StorageClassesDesired == nil {
		c.StorageClassesDesired = []string{}
	}
	c.Properties = json.RawMessage(props)
	c.CreatedAt, c.ModifiedAt, c.TrashAt, c.DeleteAt = sqlrow.FromNanos(created), sqlrow.FromNanos(modified), sqlrow.FromNanos(trash), sqlrow.FromNanos(del)
	return c, nil
}

// sqlArgs collects a statement's arguments, handing out their
// placeholders.
type sqlArgs []any

func (a *sqlArgs) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// live is the condition "not deleted at now, and (unless includeTrash)
// not trashed at now".
func (a *sqlArgs) live(now time.Time, includeTrash bool) string {
	n := a.add(sqlrow.Nanos(now))
	cond := "(delete_at = 0 OR delete_at > " + n + ")"
	if !includeTrash {
		cond += " AND (trash_at = 0 OR trash_at > " + n + ")"
	}
	return cond
}

// claimName takes the name lock of c's storage and owner and name, then
// reports whether another collection live at at is called name ("" is
// never taken, and needs no lock).
func claimName(ctx context.Context, tx pgx.Tx, c state.Collection, name string, at time.Time) (bool, error) {
	if name == "" {
		return false, nil
	}
	h := fnv.New32a()
	for _, s := range []string{c.Storage, c.OwnerUUID, name} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, nameLockClass, int32(h.Sum32())); err != nil {
		return false, err
	}
	args := sqlArgs{c.Storage, c.OwnerUUID, name, c.UUID}
	var taken bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM collections WHERE storage = $1 AND owner_uuid = $2 AND name = $3 AND uuid <> $4 AND `+
		args.live(at, false)+`)`, args...).Scan(&taken)
	return taken, err
}

// CreateCollection implements state.CollectionStore.
func (d *DB) CreateCollection(ctx context.Context, c state.Collection, ensureUniqueName bool) (state.Collection, error) {
	c.Version = 1
	if err := checkText(c); err != nil {
		return c, fmt.Errorf("%s: create collection: %w", d.where, err)
	}
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		taken, err := claimName(ctx, tx, c, c.Name, c.CreatedAt)
		if err != nil {
			return err
		}
		if taken && ensureUniqueName {
			c.Name += state.UniqueNameSuffix(c.CreatedAt)
			if taken, err = claimName(ctx, tx, c, c.Name, c.CreatedAt); err != nil {
				return err
			}
		}
		if taken {
			return state.ErrNameTaken
		}
		_, err = tx.Exec(ctx, `INSERT INTO collections (`+collColumns+`) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18)`, collArgs(c)...)
		return err
	})
	var pe *pgconn.PgError
	switch {
	case errors.Is(err, state.ErrNameTaken):
		return c, state.ErrNameTaken
	case errors.As(err, &pe) && pe.Code == codeUniqueViolation:
		return c, fmt.Errorf("%s: create collection: uuid %s exists", d.where, c.UUID)
	}
	return c, d.wrap("create collection", err)
}

// GetCollection implements state.CollectionStore.
func (d *DB) GetCollection(ctx context.Context, storage, uuid string, includeTrash bool, now time.Time) (state.Collection, error) {
	args := sqlArgs{uuid, storage}
	c, err := scanColl(d.pool.QueryRow(ctx, `SELECT `+collColumns+` FROM collections WHERE uuid = $1 AND storage = $2 AND `+args.live(now, includeTrash), args...))
	if errors.Is(err, state.ErrNoCollection) {
		return c, err
	}
	return c, d.wrap("get collection", err)
}

// ListCollections implements state.CollectionStore: the count and the
// page go in one round trip (each statement sees what is committed when
// it starts, as the SQLite engine's two statements do).
func (d *DB) ListCollections(ctx context.Context, q state.CollectionQuery) ([]state.Collection, int, error) {
	args := sqlArgs{q.Storage}
	where := []string{"storage = $1", args.live(q.Now, q.IncludeTrash)}
	for _, f := range q.Filters {
		cond, err := args.filter(f, q.Now)
		if err != nil {
			return nil, 0, err
		}
		where = append(where, cond)
	}
	cond := strings.Join(where, " AND ")
	nWhere := len(args)
	var order []string
	for _, o := range q.Order {
		col, _, err := args.column(o.Attr, q.Now)
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
	if q.Limit > 0 {
		sqlText += ` LIMIT ` + args.add(int64(q.Limit))
	}
	if q.Offset > 0 {
		sqlText += ` OFFSET ` + args.add(int64(q.Offset))
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT count(*) FROM collections WHERE `+cond, args[:nWhere]...)
	b.Queue(sqlText, args...)
	br := d.pool.SendBatch(ctx, b)
	defer br.Close()
	var matched int64
	if err := br.QueryRow().Scan(&matched); err != nil {
		return nil, 0, d.wrap("list collections", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, 0, d.wrap("list collections", err)
	}
	defer rows.Close()
	out, err := sqlrow.Collect(rows, scanColl)
	if err != nil {
		return nil, 0, d.wrap("list collections", err)
	}
	rows.Close()
	return out, int(matched), d.wrap("list collections", br.Close())
}

// UpdateCollection implements state.CollectionStore.
func (d *DB) UpdateCollection(ctx context.Context, storage, uuid string, now time.Time, f func(*state.Collection) error) (state.Collection, error) {
	var before, out state.Collection
	var fErr error
	err := pgx.BeginFunc(ctx, d.pool, func(tx pgx.Tx) error {
		args := sqlArgs{uuid, storage}
		c, err := scanColl(tx.QueryRow(ctx, `SELECT `+collColumns+` FROM collections WHERE uuid = $1 AND storage = $2 AND `+
			args.live(now, true)+` FOR UPDATE`, args...))
		if err != nil {
			return err
		}
		before = c
		if err := f(&c); err != nil {
			fErr = err
			return err
		}
		c.UUID, c.Storage, c.CreatedAt, c.Version = before.UUID, before.Storage, before.CreatedAt, before.Version+1
		if err := checkText(c); err != nil {
			return err
		}
		if !c.Trashed(now) && (c.Name != before.Name || c.OwnerUUID != before.OwnerUUID || before.Trashed(now)) {
			taken, err := claimName(ctx, tx, c, c.Name, now)
			if err != nil {
				return err
			}
			if taken {
				return state.ErrNameTaken
			}
		}
		a := collArgs(c)
		if _, err := tx.Exec(ctx, `UPDATE collections SET owner_uuid=$1, name=$2, description=$3, manifest_text=$4, portable_data_hash=$5,
			replication_desired=$6, storage_classes_desired=$7, properties=$8, file_count=$9, file_size_total=$10, modified_at=$11,
			modified_by_user_uuid=$12, trash_at=$13, delete_at=$14, version=$15 WHERE uuid=$16 AND storage=$17`,
			append(append(append([]any{}, a[2:12]...), a[13:]...), uuid, storage)...); err != nil {
			return err
		}
		out = c
		return nil
	})
	switch {
	case fErr != nil:
		return before, fErr
	case errors.Is(err, state.ErrNoCollection):
		return before, state.ErrNoCollection
	case errors.Is(err, state.ErrNameTaken):
		return before, state.ErrNameTaken
	case err != nil:
		return before, d.wrap("update collection", err)
	}
	return out, nil
}

// column is the SQL expression of a filterable attribute.
func (a *sqlArgs) column(attr string, now time.Time) (string, state.AttrType, error) {
	t, ok := state.CollectionAttrs[attr]
	if !ok {
		return "", 0, fmt.Errorf("collections cannot be filtered or ordered by %q", attr)
	}
	if attr == "is_trashed" {
		return "(trash_at <> 0 AND trash_at <= " + a.add(sqlrow.Nanos(now)) + ")", t, nil
	}
	return attr, t, nil
}

// filter renders one filter as a condition, adding its arguments.
func (a *sqlArgs) filter(f state.Filter, now time.Time) (string, error) {
	col, typ, err := a.column(f.Attr, now)
	if err != nil {
		return "", err
	}
	vals := make([]any, len(f.Values))
	for i, v := range f.Values {
		if vals[i], err = sqlrow.FilterValue(f.Attr, typ, v); err != nil {
			return "", err
		}
	}
	one := func() error {
		if len(vals) != 1 {
			return fmt.Errorf("filter %s %s takes one value", f.Attr, f.Op)
		}
		return nil
	}
	switch f.Op {
	case state.OpEq, state.OpNe, state.OpLt, state.OpLe, state.OpGt, state.OpGe:
		if err := one(); err != nil {
			return "", err
		}
		op := f.Op
		if op == state.OpNe {
			op = "<>"
		}
		if s, ok := vals[0].(string); ok {
			if i := strings.IndexByte(s, 0); i >= 0 {
				return nulCompare(col, op, s[:i], a), nil
			}
		}
		return col + " " + op + " " + a.add(vals[0]), nil
	case state.OpLike, state.OpILike:
		if typ != state.AttrString {
			return "", fmt.Errorf("filter %s %s: %s is not a text attribute", f.Attr, f.Op, f.Attr)
		}
		if err := one(); err != nil {
			return "", err
		}
		if strings.IndexByte(vals[0].(string), 0) >= 0 {
			return "FALSE", nil // only text with a NUL could match, and there is none
		}
		// Backslash is LIKE's default escape, as the contract's; the
		// column's "C" collation makes ILIKE fold ASCII only.
		return col + " " + strings.ToUpper(f.Op) + " " + a.add(vals[0]), nil
	case state.OpIn, state.OpNotIn:
		var ph []string
		for _, v := range vals {
			if s, ok := v.(string); ok && strings.IndexByte(s, 0) >= 0 {
				continue // equal to no stored text
			}
			ph = append(ph, a.add(v))
		}
		if len(ph) == 0 {
			if f.Op == state.OpIn {
				return "FALSE", nil
			}
			return "TRUE", nil
		}
		neg := ""
		if f.Op == state.OpNotIn {
			neg = "NOT "
		}
		return col + " " + neg + "IN (" + strings.Join(ph, ", ") + ")", nil
	case state.OpIsNull, state.OpNotNull:
		var isNull, notNull string
		switch typ {
		case state.AttrString:
			isNull, notNull = col+" = ''", col+" <> ''"
		case state.AttrBool:
			isNull, notNull = "NOT "+col, col
		default:
			isNull, notNull = col+" = 0", col+" <> 0"
		}
		if f.Op == state.OpIsNull {
			return isNull, nil
		}
		return notNull, nil
	}
	return "", fmt.Errorf("unsupported filter operator %q", f.Op)
}

// nulCompare compares col with a value that has a NUL at len(prefix):
// PostgreSQL text cannot hold one, so no stored text equals it, and in
// byte order a stored text is below it exactly when it is at most prefix.
func nulCompare(col, op, prefix string, a *sqlArgs) string {
	switch op {
	case state.OpEq:
		return "FALSE"
	case "<>":
		return "TRUE"
	case state.OpLt, state.OpLe:
		return col + " <= " + a.add(prefix)
	}
	return col + " > " + a.add(prefix)
}
