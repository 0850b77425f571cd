package statetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keepgate/keepgate/state"
)

// Collection returns a complete collection of storage with the given
// uuid and name, created at now.
func Collection(uuid, storage, name string, now time.Time) state.Collection {
	now = now.UTC().Truncate(time.Microsecond)
	return state.Collection{UUID: uuid, Storage: storage, OwnerUUID: "zzzzz-tpzed-000000000000001", Name: name,
		ManifestText:     ". acbd18db4cc2f85cedef654fccc4a4d8+3 0:3:foo.txt\n",
		PortableDataHash: "83367e8913dcec0bf3fc25ed5a27eacb+49", StorageClassesDesired: []string{"default"},
		Properties: json.RawMessage(`{"a":1}`), FileCount: 1, FileSizeTotal: 3, CreatedAt: now, ModifiedAt: now}
}

// RunCollections runs the conformance suite of state.CollectionStore.
func RunCollections(t *testing.T, open func(t *testing.T) state.CollectionStore) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Microsecond)
	t.Run("CreateGetIsolated", func(t *testing.T) {
		s := open(t)
		c := Collection("zzzzz-4zz18-000000000000001", "tenant-a", "one", now)
		got, err := s.CreateCollection(ctx, c, false)
		if err != nil || got.Version != 1 || got.Name != "one" {
			t.Fatalf("create: %v %+v", err, got)
		}
		g, err := s.GetCollection(ctx, "tenant-a", c.UUID, false, now)
		if err != nil || g.ManifestText != c.ManifestText || g.PortableDataHash != c.PortableDataHash || !g.CreatedAt.Equal(c.CreatedAt) ||
			string(g.Properties) != `{"a":1}` || len(g.StorageClassesDesired) != 1 || g.FileSizeTotal != 3 {
			t.Fatalf("get: %v %+v", err, g)
		}
		if _, err := s.GetCollection(ctx, "tenant-b", c.UUID, true, now); !errors.Is(err, state.ErrNoCollection) {
			t.Fatalf("another storage's collection: %v, want ErrNoCollection", err)
		}
		if _, err := s.UpdateCollection(ctx, "tenant-b", c.UUID, now, func(*state.Collection) error { return nil }); !errors.Is(err, state.ErrNoCollection) {
			t.Fatalf("update of another storage's collection: %v", err)
		}
		items, n, err := s.ListCollections(ctx, state.CollectionQuery{Storage: "tenant-b", Now: now})
		if err != nil || n != 0 || len(items) != 0 || items == nil {
			t.Fatalf("another storage's list: %v %d %#v", err, n, items)
		}
		if _, err := s.GetCollection(ctx, "tenant-a", "zzzzz-4zz18-nope", false, now); !errors.Is(err, state.ErrNoCollection) {
			t.Fatalf("unknown uuid: %v", err)
		}
	})
	t.Run("Names", func(t *testing.T) {
		s := open(t)
		a := Collection("zzzzz-4zz18-00000000000000a", "tenant-a", "same", now)
		if _, err := s.CreateCollection(ctx, a, false); err != nil {
			t.Fatal(err)
		}
		b := Collection("zzzzz-4zz18-00000000000000b", "tenant-a", "same", now)
		if _, err := s.CreateCollection(ctx, b, false); !errors.Is(err, state.ErrNameTaken) {
			t.Fatalf("name clash: %v, want ErrNameTaken", err)
		}
		got, err := s.CreateCollection(ctx, b, true)
		if err != nil || got.Name != "same"+state.UniqueNameSuffix(b.CreatedAt) {
			t.Fatalf("ensure unique name: %v %q", err, got.Name)
		}
		// Another storage, another owner, or "" never clash.
		for i, c := range []state.Collection{Collection("zzzzz-4zz18-00000000000000c", "tenant-b", "same", now), Collection("zzzzz-4zz18-00000000000000d", "tenant-a", "", now), Collection("zzzzz-4zz18-00000000000000e", "tenant-a", "", now)} {
			if _, err := s.CreateCollection(ctx, c, false); err != nil {
				t.Fatalf("%d: %v", i, err)
			}
		}
		o := Collection("zzzzz-4zz18-00000000000000f", "tenant-a", "same", now)
		o.OwnerUUID = "zzzzz-tpzed-000000000000002"
		if _, err := s.CreateCollection(ctx, o, false); err != nil {
			t.Fatalf("other owner: %v", err)
		}
		// Renaming onto a taken name fails; a trashed collection frees its name.
		if _, err := s.UpdateCollection(ctx, "tenant-a", got.UUID, now, func(c *state.Collection) error { c.Name = "same"; return nil }); !errors.Is(err, state.ErrNameTaken) {
			t.Fatalf("rename onto a taken name: %v", err)
		}
		if _, err := s.UpdateCollection(ctx, "tenant-a", a.UUID, now, func(c *state.Collection) error { c.TrashAt = now; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.UpdateCollection(ctx, "tenant-a", got.UUID, now, func(c *state.Collection) error { c.Name = "same"; return nil }); err != nil {
			t.Fatalf("rename onto a trashed collection's name: %v", err)
		}
	})
	t.Run("TrashAndDelete", func(t *testing.T) {
		s := open(t)
		c := Collection("zzzzz-4zz18-000000000000010", "tenant-a", "t", now)
		c.TrashAt, c.DeleteAt = now.Add(time.Hour), now.Add(2*time.Hour)
		if _, err := s.CreateCollection(ctx, c, false); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetCollection(ctx, "tenant-a", c.UUID, false, now); err != nil {
			t.Fatalf("before trash_at: %v", err)
		}
		later := now.Add(90 * time.Minute)
		if _, err := s.GetCollection(ctx, "tenant-a", c.UUID, false, later); !errors.Is(err, state.ErrNoCollection) {
			t.Fatalf("after trash_at: %v", err)
		}
		if g, err := s.GetCollection(ctx, "tenant-a", c.UUID, true, later); err != nil || !g.Trashed(later) {
			t.Fatalf("after trash_at with trash: %v", err)
		}
		if _, err := s.GetCollection(ctx, "tenant-a", c.UUID, true, now.Add(3*time.Hour)); !errors.Is(err, state.ErrNoCollection) {
			t.Fatalf("after delete_at: %v", err)
		}
		items, n, err := s.ListCollections(ctx, state.CollectionQuery{Storage: "tenant-a", Now: later, IncludeTrash: true,
			Filters: []state.Filter{{Attr: "is_trashed", Op: state.OpEq, Values: []any{true}}}})
		if err != nil || n != 1 || len(items) != 1 {
			t.Fatalf("list trashed: %v %d", err, n)
		}
	})
	t.Run("ListFilters", func(t *testing.T) {
		s := open(t)
		for i := 0; i < 12; i++ {
			c := Collection(fmt.Sprintf("zzzzz-4zz18-%015d", 100+i), "tenant-a", fmt.Sprintf("Item %02d", i), now.Add(time.Duration(i)*time.Second))
			if i%3 == 0 {
				c.PortableDataHash = "d41d8cd98f00b204e9800998ecf8427e+0"
			}
			if _, err := s.CreateCollection(ctx, c, false); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range []struct {
			name string
			q    state.CollectionQuery
			n    int
			len  int
			want string
		}{
			{"all", state.CollectionQuery{}, 12, 12, "Item 00"},
			{"pdh", state.CollectionQuery{Filters: []state.Filter{{Attr: "portable_data_hash", Op: "=", Values: []any{"d41d8cd98f00b204e9800998ecf8427e+0"}}}}, 4, 4, "Item 00"},
			{"name and owner", state.CollectionQuery{Filters: []state.Filter{{Attr: "name", Op: "=", Values: []any{"Item 05"}}, {Attr: "owner_uuid", Op: "=", Values: []any{"zzzzz-tpzed-000000000000001"}}}}, 1, 1, "Item 05"},
			{"like is case-sensitive", state.CollectionQuery{Filters: []state.Filter{{Attr: "name", Op: "like", Values: []any{"item%"}}}}, 0, 0, ""},
			{"ilike", state.CollectionQuery{Filters: []state.Filter{{Attr: "name", Op: "ilike", Values: []any{"item 1%"}}}}, 2, 2, "Item 10"},
			{"like with _", state.CollectionQuery{Filters: []state.Filter{{Attr: "name", Op: "like", Values: []any{"Item 0_"}}}}, 10, 10, "Item 00"},
			{"in", state.CollectionQuery{Filters: []state.Filter{{Attr: "uuid", Op: "in", Values: []any{"zzzzz-4zz18-000000000000101", "zzzzz-4zz18-000000000000103", "x"}}}}, 2, 2, "Item 01"},
			{"in none", state.CollectionQuery{Filters: []state.Filter{{Attr: "uuid", Op: "in"}}}, 0, 0, ""},
			{"not in", state.CollectionQuery{Filters: []state.Filter{{Attr: "uuid", Op: "not in", Values: []any{"zzzzz-4zz18-000000000000100"}}}}, 11, 11, "Item 01"},
			{"time", state.CollectionQuery{Filters: []state.Filter{{Attr: "created_at", Op: ">=", Values: []any{now.Add(10 * time.Second)}}}}, 2, 2, "Item 10"},
			{"order desc, limit, offset", state.CollectionQuery{Order: []state.Order{{Attr: "created_at", Desc: true}}, Limit: 3, Offset: 1}, 12, 3, "Item 10"},
		} {
			tc.q.Storage, tc.q.Now = "tenant-a", now.Add(time.Minute)
			items, n, err := s.ListCollections(ctx, tc.q)
			if err != nil || n != tc.n || len(items) != tc.len || (tc.len > 0 && items[0].Name != tc.want) {
				first := ""
				if len(items) > 0 {
					first = items[0].Name
				}
				t.Errorf("%s: %v matched %d (want %d), %d items (want %d), first %q (want %q)", tc.name, err, n, tc.n, len(items), tc.len, first, tc.want)
			}
		}
		for _, f := range []state.Filter{{Attr: "secret", Op: "=", Values: []any{"x"}}, {Attr: "name", Op: "=", Values: []any{int64(1)}}, {Attr: "name", Op: "~", Values: []any{"x"}}, {Attr: "file_count", Op: "like", Values: []any{int64(1)}}} {
			if _, _, err := s.ListCollections(ctx, state.CollectionQuery{Storage: "tenant-a", Now: now, Filters: []state.Filter{f}}); err == nil {
				t.Errorf("filter %+v: accepted", f)
			}
		}
	})
	t.Run("ConcurrentUpdates", func(t *testing.T) {
		s := open(t)
		c := Collection("zzzzz-4zz18-000000000000200", "tenant-a", "n", now)
		if _, err := s.CreateCollection(ctx, c, false); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := s.UpdateCollection(ctx, "tenant-a", c.UUID, now, func(c *state.Collection) error { c.FileCount++; return nil }); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		g, err := s.GetCollection(ctx, "tenant-a", c.UUID, false, now)
		if err != nil || g.FileCount != 21 || g.Version != 21 {
			t.Fatalf("after 20 concurrent updates: %v count %d version %d", err, g.FileCount, g.Version)
		}
		sentinel := errors.New("no")
		if _, err := s.UpdateCollection(ctx, "tenant-a", c.UUID, now, func(c *state.Collection) error { c.Name = "x"; return sentinel }); err != sentinel {
			t.Fatalf("f's error: %v", err)
		}
		if g, _ := s.GetCollection(ctx, "tenant-a", c.UUID, false, now); g.Name != "n" {
			t.Fatalf("an aborted update changed the name to %q", g.Name)
		}
	})
}
