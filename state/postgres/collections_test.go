package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/internal/testenv"
	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/statetest"
)

func TestCollectionsConformance(t *testing.T) {
	statetest.RunCollections(t, func(t *testing.T) state.CollectionStore { return open(t, testenv.NewDatabase(t)) })
}

// proxies opens n engines (n pools, as n keepproxies) on one new database.
func proxies(t *testing.T, n int) []*DB {
	dsn := testenv.NewDatabase(t)
	dbs := make([]*DB, n)
	for i := range dbs {
		dbs[i] = open(t, dsn)
	}
	return dbs
}

// race runs f(i) for i < n at once, each on dbs[i%len(dbs)].
func race(n int, dbs []*DB, f func(i int, db *DB)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i, dbs[i%len(dbs)])
		}()
	}
	close(start)
	wg.Wait()
}

// liveNames counts the live collections of tenant-a per name.
func liveNames(t *testing.T, db *DB, now time.Time) map[string]int {
	t.Helper()
	items, _, err := db.ListCollections(context.Background(), state.CollectionQuery{Storage: "tenant-a", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]int{}
	for _, c := range items {
		names[c.Name]++
	}
	return names
}

// Several proxies creating (or renaming to, or restoring) one name at
// once: exactly one gets it; with ensure_unique_name the others get
// distinct suffixed names (or ErrNameTaken when even that clashes).
func TestCollectionNamesConcurrent(t *testing.T) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	const n = 16
	dbs := proxies(t, 4)
	errs := make([]error, n)

	t.Run("Create", func(t *testing.T) {
		race(n, dbs, func(i int, db *DB) {
			_, errs[i] = db.CreateCollection(ctx, statetest.Collection(fmt.Sprintf("zzzzz-4zz18-a%014d", i), "tenant-a", "plain", now), false)
		})
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, state.ErrNameTaken):
				t.Errorf("%d: %v", i, err)
			}
		}
		if ok != 1 || liveNames(t, dbs[0], now)["plain"] != 1 {
			t.Fatalf("%d of %d concurrent creates of one name succeeded, want 1", ok, n)
		}
	})

	t.Run("EnsureUniqueName", func(t *testing.T) {
		// Same created_at: one gets the name, one the suffixed name, the
		// rest clash even so.
		race(n, dbs, func(i int, db *DB) {
			_, errs[i] = db.CreateCollection(ctx, statetest.Collection(fmt.Sprintf("zzzzz-4zz18-b%014d", i), "tenant-a", "uniq", now), true)
		})
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, state.ErrNameTaken):
				t.Errorf("%d: %v", i, err)
			}
		}
		names := liveNames(t, dbs[0], now)
		if ok != 2 || names["uniq"] != 1 || names["uniq"+state.UniqueNameSuffix(now)] != 1 {
			t.Fatalf("%d succeeded (want 2): %v", ok, names)
		}
		// Distinct created_at: all succeed, with distinct names.
		race(n, dbs, func(i int, db *DB) {
			_, errs[i] = db.CreateCollection(ctx, statetest.Collection(fmt.Sprintf("zzzzz-4zz18-c%014d", i), "tenant-a", "distinct",
				now.Add(time.Duration(i+1)*time.Millisecond)), true)
		})
		for i, err := range errs {
			if err != nil {
				t.Errorf("%d: %v", i, err)
			}
		}
		for name, k := range liveNames(t, dbs[0], now.Add(time.Second)) {
			if k != 1 {
				t.Errorf("%d live collections are called %q", k, name)
			}
		}
	})

	t.Run("RenameAndRestore", func(t *testing.T) {
		// Half rename onto a free name, half create it.
		for i := 0; i < n/2; i++ {
			if _, err := dbs[0].CreateCollection(ctx, statetest.Collection(fmt.Sprintf("zzzzz-4zz18-d%014d", i), "tenant-a", fmt.Sprintf("orig %d", i), now), false); err != nil {
				t.Fatal(err)
			}
		}
		race(n, dbs, func(i int, db *DB) {
			if i%2 == 0 {
				_, errs[i] = db.UpdateCollection(ctx, "tenant-a", fmt.Sprintf("zzzzz-4zz18-d%014d", i/2), now, func(c *state.Collection) error { c.Name = "target"; return nil })
			} else {
				_, errs[i] = db.CreateCollection(ctx, statetest.Collection(fmt.Sprintf("zzzzz-4zz18-e%014d", i), "tenant-a", "target", now), false)
			}
		})
		ok := 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, state.ErrNameTaken):
				t.Errorf("%d: %v", i, err)
			}
		}
		if ok != 1 || liveNames(t, dbs[0], now)["target"] != 1 {
			t.Fatalf("%d of %d concurrent renames and creates onto one name succeeded, want 1", ok, n)
		}
		// Trashed collections of one name, restored at once: one comes back.
		for i := 0; i < n; i++ {
			c := statetest.Collection(fmt.Sprintf("zzzzz-4zz18-f%014d", i), "tenant-a", "restored", now)
			c.TrashAt = now.Add(-time.Second)
			if _, err := dbs[0].CreateCollection(ctx, c, false); err != nil {
				t.Fatal(err)
			}
		}
		race(n, dbs, func(i int, db *DB) {
			_, errs[i] = db.UpdateCollection(ctx, "tenant-a", fmt.Sprintf("zzzzz-4zz18-f%014d", i), now, func(c *state.Collection) error { c.TrashAt = time.Time{}; return nil })
		})
		ok = 0
		for i, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, state.ErrNameTaken):
				t.Errorf("%d: %v", i, err)
			}
		}
		if ok != 1 || liveNames(t, dbs[0], now)["restored"] != 1 {
			t.Fatalf("%d of %d concurrent restores of one name succeeded, want 1", ok, n)
		}
	})
}

// What PostgreSQL adds to the suite: byte order and ASCII-only folding
// whatever the database's locale (the run's default one, and ICU en-US,
// which would sort "a B b" and fold "É" to "é"), JSON kept verbatim, text
// it cannot hold refused (on write) or matched exactly (in filters),
// duplicate UUIDs.
func TestCollectionsPostgres(t *testing.T) {
	t.Run("DefaultLocale", func(t *testing.T) { testCollectionsPostgres(t, testenv.NewDatabase(t)) })
	t.Run("ICU", func(t *testing.T) {
		srv := testenv.StartPostgres(t)
		name := fmt.Sprintf("kg_icu_%d", os.Getpid())
		srv.Exec(t, "postgres", `CREATE DATABASE `+name+` TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`)
		t.Cleanup(func() { srv.Exec(t, "postgres", `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`) })
		testCollectionsPostgres(t, srv.DSN(name))
	})
}

func testCollectionsPostgres(t *testing.T, dsn string) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	db := open(t, dsn)
	for i, name := range []string{"b", "B", "a", "É", "é", "ab"} {
		c := statetest.Collection(fmt.Sprintf("zzzzz-4zz18-%015d", i), "tenant-a", name, now)
		c.Properties = json.RawMessage(` {"z": [1, 2],"a":"\u0000"} `)
		c.StorageClassesDesired = nil
		if _, err := db.CreateCollection(ctx, c, false); err != nil {
			t.Fatal(err)
		}
	}
	list := func(fs ...state.Filter) string {
		t.Helper()
		items, n, err := db.ListCollections(ctx, state.CollectionQuery{Storage: "tenant-a", Now: now, Filters: fs, Order: []state.Order{{Attr: "name"}}})
		if err != nil || n != len(items) {
			t.Fatalf("%+v: %v %d", fs, err, n)
		}
		var names []string
		for _, c := range items {
			names = append(names, c.Name)
		}
		return strings.Join(names, " ")
	}
	for _, tc := range []struct {
		f    []state.Filter
		want string
	}{
		{nil, "B a ab b É é"},
		{[]state.Filter{{Attr: "name", Op: "ilike", Values: []any{"b"}}}, "B b"},
		{[]state.Filter{{Attr: "name", Op: "ilike", Values: []any{"é"}}}, "é"},
		{[]state.Filter{{Attr: "name", Op: "like", Values: []any{"_"}}}, "B a b É é"},
		{[]state.Filter{{Attr: "name", Op: "<", Values: []any{"b"}}}, "B a ab"},
		{[]state.Filter{{Attr: "name", Op: "=", Values: []any{"a\x00"}}}, ""},
		{[]state.Filter{{Attr: "name", Op: "!=", Values: []any{"a\x00"}}}, "B a ab b É é"},
		{[]state.Filter{{Attr: "name", Op: "<", Values: []any{"a\x00"}}}, "B a"},
		{[]state.Filter{{Attr: "name", Op: ">=", Values: []any{"a\x00"}}}, "ab b É é"},
		{[]state.Filter{{Attr: "name", Op: "like", Values: []any{"%\x00"}}}, ""},
		{[]state.Filter{{Attr: "name", Op: "in", Values: []any{"a\x00", "b"}}}, "b"},
		{[]state.Filter{{Attr: "name", Op: "not in", Values: []any{"a\x00"}}}, "B a ab b É é"},
		{[]state.Filter{{Attr: "is_trashed", Op: "is_null"}, {Attr: "trash_at", Op: "is_null"}, {Attr: "description", Op: "is_null"}}, "B a ab b É é"},
	} {
		if got := list(tc.f...); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.f, got, tc.want)
		}
	}
	// Arguments of filters, of the order, and limit and offset number on.
	items, n, err := db.ListCollections(ctx, state.CollectionQuery{Storage: "tenant-a", Now: now, Limit: 2, Offset: 1,
		Filters: []state.Filter{{Attr: "is_trashed", Op: "=", Values: []any{false}}, {Attr: "created_at", Op: "<=", Values: []any{now}}},
		Order:   []state.Order{{Attr: "is_trashed", Desc: true}, {Attr: "name"}}})
	if err != nil || n != 6 || len(items) != 2 || items[0].Name != "a" || items[1].Name != "ab" {
		t.Fatalf("ordered page: %v %d %+v", err, n, items)
	}
	g, err := db.GetCollection(ctx, "tenant-a", "zzzzz-4zz18-000000000000000", false, now)
	if err != nil || string(g.Properties) != ` {"z": [1, 2],"a":"\u0000"} ` || g.StorageClassesDesired == nil || len(g.StorageClassesDesired) != 0 {
		t.Fatalf("get: %v %q %#v", err, g.Properties, g.StorageClassesDesired)
	}
	bad := statetest.Collection("zzzzz-4zz18-bad000000000000", "tenant-a", "nul\x00", now)
	if _, err := db.CreateCollection(ctx, bad, false); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("a name with NUL: %v", err)
	}
	if _, err := db.UpdateCollection(ctx, "tenant-a", g.UUID, now, func(c *state.Collection) error { c.Description = "\xff"; return nil }); err == nil {
		t.Fatal("a description that is not UTF-8: accepted")
	}
	dup := statetest.Collection(g.UUID, "tenant-b", "other", now)
	if _, err := db.CreateCollection(ctx, dup, false); err == nil || errors.Is(err, state.ErrNameTaken) || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("a duplicate uuid: %v", err)
	}
	notJSON := statetest.Collection("zzzzz-4zz18-badjson00000000", "tenant-a", "j", now)
	notJSON.Properties = json.RawMessage(`{"a":`)
	if _, err := db.CreateCollection(ctx, notJSON, false); err == nil {
		t.Fatal("properties that are not JSON: accepted")
	}
}
