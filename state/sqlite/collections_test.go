package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/keepgate/keepgate/state"
	"github.com/keepgate/keepgate/state/statetest"
)

func TestCollectionsConformance(t *testing.T) {
	statetest.RunCollections(t, func(t *testing.T) state.CollectionStore {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "keepgate.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}
