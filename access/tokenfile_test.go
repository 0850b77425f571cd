package access

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keepgate/keepgate/blockstore"
)

func TestTokenFileReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens.yml")
	write := func(s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		os.Rename(tmp, path)
	}
	write("tokens:\n  - name: alice\n    token: alice-token-1\n    scopes: [read, write]\n")
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := tf.Authenticate(context.Background(), "alice-token-1")
	if err != nil || id.Name != "alice" || !id.Has(ScopeWrite) || id.Has(ScopeAdmin) {
		t.Fatalf("alice: %+v %v", id, err)
	}
	if _, err := tf.Authenticate(context.Background(), "bob-token-1"); !blockstore.Is(err, blockstore.KindForbidden) {
		t.Fatalf("unknown token: %v", err)
	}
	reloaded := make(chan struct{}, 10)
	tf.OnReload = func() { reloaded <- struct{}{} }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go tf.Watch(ctx, 20*time.Millisecond)
	write("tokens:\n  - name: bob\n    token: bob-token-1\n    scopes: [read]\n")
	select {
	case <-reloaded:
	case <-time.After(5 * time.Second):
		t.Fatal("token file change not picked up")
	}
	if _, err := tf.Authenticate(context.Background(), "alice-token-1"); err == nil {
		t.Fatal("removed token still accepted")
	}
	if id, err := tf.Authenticate(context.Background(), "bob-token-1"); err != nil || id.Has(ScopeWrite) {
		t.Fatalf("bob: %+v %v", id, err)
	}
	// A broken file is refused; the previous tokens stay.
	write("tokens: [ {name: x, token: short, scopes: [read]} ]\n")
	time.Sleep(200 * time.Millisecond)
	if _, err := tf.Authenticate(context.Background(), "bob-token-1"); err != nil {
		t.Fatalf("after a broken edit the previous tokens must stay: %v", err)
	}
	if err := tf.Reload(); err == nil {
		t.Fatal("broken file accepted")
	}
	for _, bad := range []string{"tokens:\n  - token: abcdefghij\n    scopes: [fly]\n", "tokenz: []\n", "tokens:\n  - token: abcdefghij\n"} {
		write(bad)
		if err := tf.Reload(); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// The token file holds every API token: a mode that lets other users read
// it is refused at start and on reload (the previous tokens stay), with a
// message naming the file and the chmod to run.
func TestTokenFileModeChecked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yml")
	if err := os.WriteFile(path, []byte("tokens:\n  - name: a\n    token: a-token-123\n    scopes: [read]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	_, err := LoadTokenFile(path, nil)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "chmod 600 "+path) {
		t.Fatalf("mode 0644: %v", err)
	}
	os.Chmod(path, 0o640) // group-readable, like the other secret files, is allowed
	tf, err := LoadTokenFile(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o604)
	if err := tf.Reload(); err == nil {
		t.Fatal("reload of a world-readable token file succeeded")
	}
	if _, err := tf.Authenticate(context.Background(), "a-token-123"); err != nil {
		t.Fatalf("previous tokens lost after a refused reload: %v", err)
	}
}
