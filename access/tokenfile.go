package access

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/keepgate/keepgate/internal/config"
	"github.com/keepgate/keepgate/internal/every"
)

// TokenFile is an Authenticator backed by a YAML file:
//
//	tokens:
//	  - name: alice            # shown in logs and usage, never the token
//	    token: s3cr3t...       # the bearer token clients send
//	    scopes: [read, write]  # read, write, admin
//
// Reload re-reads it (on SIGHUP); Watch also reloads it when it changes on
// disk. A file that fails to parse is refused and the previous tokens stay
// in force, so a bad edit never locks everybody out.
type TokenFile struct {
	path string
	log  *slog.Logger
	mu   sync.RWMutex
	byID map[[32]byte]*Identity
	stat fileStamp
	// OnReload is called after every successful reload (e.g. to purge a cache).
	OnReload func()
}

type fileStamp struct {
	mtime time.Time
	size  int64
	ino   uint64
}

type tokenFileYAML struct {
	Tokens []struct {
		Name   string   `yaml:"name"`
		Token  string   `yaml:"token"`
		Scopes []string `yaml:"scopes"`
	} `yaml:"tokens"`
}

// LoadTokenFile reads path; it fails if the file is missing or invalid.
func LoadTokenFile(path string, log *slog.Logger) (*TokenFile, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tf := &TokenFile{path: path, log: log}
	if err := tf.Reload(); err != nil {
		return nil, err
	}
	return tf, nil
}

// Reload re-reads the file. On error the previous tokens are kept.
func (tf *TokenFile) Reload() error {
	st, err := stampOf(tf.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	f, err := os.Open(tf.path)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	// The file holds every API token: the same rule as every secret file.
	if err := config.CheckSecretMode(tf.path, fi); err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	var doc tokenFileYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil && len(data) > 0 {
		return fmt.Errorf("token file %s: %w", tf.path, err)
	}
	byID := map[[32]byte]*Identity{}
	for i, t := range doc.Tokens {
		if len(t.Token) < 8 {
			return fmt.Errorf("token file %s: entry %d (%q): token must be at least 8 characters", tf.path, i+1, t.Name)
		}
		id := &Identity{Name: t.Name, Source: "token-file"}
		if id.Name == "" {
			id.Name = "token-" + TokenID(t.Token)
		}
		if len(t.Scopes) == 0 {
			return fmt.Errorf("token file %s: entry %d (%q): scopes missing (use read, write, admin)", tf.path, i+1, id.Name)
		}
		for _, s := range t.Scopes {
			switch Scope(s) {
			case ScopeRead, ScopeWrite, ScopeAdmin:
				id.Scopes = append(id.Scopes, Scope(s))
			default:
				return fmt.Errorf("token file %s: entry %d (%q): unknown scope %q (use read, write, admin)", tf.path, i+1, id.Name, s)
			}
		}
		key := sha256.Sum256([]byte(t.Token))
		if _, dup := byID[key]; dup {
			return fmt.Errorf("token file %s: entry %d (%q): duplicate token", tf.path, i+1, id.Name)
		}
		byID[key] = id
	}
	tf.mu.Lock()
	tf.byID = byID
	tf.stat = st
	tf.mu.Unlock()
	tf.log.Info("token file loaded", "path", tf.path, "tokens", len(byID))
	if tf.OnReload != nil {
		tf.OnReload()
	}
	return nil
}

// Authenticate implements Authenticator.
func (tf *TokenFile) Authenticate(_ context.Context, token string) (*Identity, error) {
	key := sha256.Sum256([]byte(token))
	tf.mu.RLock()
	defer tf.mu.RUnlock()
	// Looking up by SHA-256 digest: timing reveals nothing usable about
	// the token itself.
	if id, ok := tf.byID[key]; ok {
		return id, nil
	}
	return nil, ErrBadToken
}

// Watch polls the file every interval and reloads it when it changed, until
// ctx is done.
func (tf *TokenFile) Watch(ctx context.Context, interval time.Duration) {
	every.Do(ctx, interval, func(context.Context) {
		st, err := stampOf(tf.path)
		if err != nil {
			return
		}
		tf.mu.RLock()
		same := st == tf.stat
		tf.mu.RUnlock()
		if !same {
			if err := tf.Reload(); err != nil {
				tf.log.Error("token file reload failed; keeping the previous tokens", "error", err)
				tf.mu.Lock()
				tf.stat = st // do not retry the same broken content every tick
				tf.mu.Unlock()
			}
		}
	})
}

var _ Authenticator = (*TokenFile)(nil)

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mtime: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}
