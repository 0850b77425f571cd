-- +goose Up
-- Usage: hourly rows per (access key or principal, storage, hour, proxy),
-- written by additive upserts. hour is Unix seconds of the hour's start.
CREATE TABLE usage_hours (
    access_key            TEXT NOT NULL,
    storage               TEXT NOT NULL,
    hour                  INTEGER NOT NULL,
    proxy                 TEXT NOT NULL,
    bytes_in              INTEGER NOT NULL DEFAULT 0,
    bytes_out             INTEGER NOT NULL DEFAULT 0,
    blocks_in             INTEGER NOT NULL DEFAULT 0,
    blocks_out            INTEGER NOT NULL DEFAULT 0,
    replica_bytes_written INTEGER NOT NULL DEFAULT 0,
    requests              INTEGER NOT NULL DEFAULT 0,
    errors_4xx            INTEGER NOT NULL DEFAULT 0,
    errors_5xx            INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (access_key, storage, hour, proxy)
);
CREATE INDEX usage_hours_hour ON usage_hours (hour, storage);

-- The last flush each proxy process applied: a retried flush with the same
-- or an older sequence is a no-op.
CREATE TABLE usage_flushes (
    proxy    TEXT NOT NULL,
    instance TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    PRIMARY KEY (proxy, instance)
);

-- Proxies' heartbeats (Unix nanoseconds).
CREATE TABLE proxy_heartbeats (
    proxy   TEXT PRIMARY KEY,
    beat_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE proxy_heartbeats;
DROP TABLE usage_flushes;
DROP TABLE usage_hours;
