-- +goose Up
-- Access keys. A key is never deleted (a revoked one keeps its row), so an
-- id is never reused. Times are Unix nanoseconds, 0 meaning "not set".
CREATE TABLE access_keys (
    id                     TEXT PRIMARY KEY,
    uid                    TEXT NOT NULL UNIQUE,
    storage                TEXT NOT NULL,
    scopes                 TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    created_at             INTEGER NOT NULL,
    expires_at             INTEGER NOT NULL DEFAULT 0,
    revoked_at             INTEGER NOT NULL DEFAULT 0,
    disabled               INTEGER NOT NULL DEFAULT 0,
    last_used_at           INTEGER NOT NULL DEFAULT 0,
    secret_hash            BLOB NOT NULL,
    prev_secret_hash       BLOB,
    prev_secret_expires_at INTEGER NOT NULL DEFAULT 0,
    rate_cap_kbps          INTEGER NOT NULL DEFAULT 0,
    rate_in_cap_kbps       INTEGER NOT NULL DEFAULT 0,
    max_concurrent         INTEGER NOT NULL DEFAULT 0,
    audit_events           INTEGER NOT NULL DEFAULT 1,
    version                INTEGER NOT NULL
);
CREATE INDEX access_keys_storage ON access_keys (storage, id);

-- +goose Down
DROP TABLE access_keys;
