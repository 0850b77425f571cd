-- +goose Up
-- Access keys, as in the SQLite schema (state/sqlite/migrations) with
-- PostgreSQL's types: times are Unix nanoseconds (BIGINT), 0 meaning "not
-- set". A key is never deleted, so an id is never reused.
CREATE TABLE access_keys (
    id                     TEXT PRIMARY KEY,
    uid                    TEXT NOT NULL UNIQUE,
    storage                TEXT NOT NULL,
    scopes                 TEXT NOT NULL,
    description            TEXT NOT NULL DEFAULT '',
    created_at             BIGINT NOT NULL,
    expires_at             BIGINT NOT NULL DEFAULT 0,
    revoked_at             BIGINT NOT NULL DEFAULT 0,
    disabled               BOOLEAN NOT NULL DEFAULT FALSE,
    last_used_at           BIGINT NOT NULL DEFAULT 0,
    secret_hash            BYTEA NOT NULL,
    prev_secret_hash       BYTEA,
    prev_secret_expires_at BIGINT NOT NULL DEFAULT 0,
    rate_cap_kbps          BIGINT NOT NULL DEFAULT 0,
    rate_in_cap_kbps       BIGINT NOT NULL DEFAULT 0,
    max_concurrent         INTEGER NOT NULL DEFAULT 0,
    audit_events           BOOLEAN NOT NULL DEFAULT TRUE,
    version                BIGINT NOT NULL
);
CREATE INDEX access_keys_storage ON access_keys (storage, id);

-- +goose Down
DROP TABLE access_keys;
