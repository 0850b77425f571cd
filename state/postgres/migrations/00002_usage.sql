-- +goose Up
-- Usage: hourly rows per (principal, storage, hour, proxy), written by
-- additive upserts; one row per proxy, so two proxies never wait on each
-- other's row locks. hour is Unix seconds of the hour's start.
CREATE TABLE usage_hours (
    access_key            TEXT NOT NULL,
    storage               TEXT NOT NULL,
    hour                  BIGINT NOT NULL,
    proxy                 TEXT NOT NULL,
    bytes_in              BIGINT NOT NULL DEFAULT 0,
    bytes_out             BIGINT NOT NULL DEFAULT 0,
    blocks_in             BIGINT NOT NULL DEFAULT 0,
    blocks_out            BIGINT NOT NULL DEFAULT 0,
    replica_bytes_written BIGINT NOT NULL DEFAULT 0,
    requests              BIGINT NOT NULL DEFAULT 0,
    errors_4xx            BIGINT NOT NULL DEFAULT 0,
    errors_5xx            BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (access_key, storage, hour, proxy)
);
CREATE INDEX usage_hours_hour ON usage_hours (hour, storage);

-- The last flush each proxy process applied, written in the flush's own
-- transaction: a retried flush with the same or an older sequence is a no-op.
CREATE TABLE usage_flushes (
    proxy    TEXT NOT NULL,
    instance TEXT NOT NULL,
    seq      BIGINT NOT NULL,
    PRIMARY KEY (proxy, instance)
);

-- Proxies' heartbeats, in the database's clock.
CREATE TABLE proxy_heartbeats (
    proxy   TEXT PRIMARY KEY,
    beat_at TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE proxy_heartbeats;
DROP TABLE usage_flushes;
DROP TABLE usage_hours;
