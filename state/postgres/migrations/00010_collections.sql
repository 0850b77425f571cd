-- +goose Up
-- Collections of the Arvados API (arvapi), as in the SQLite schema
-- (state/sqlite/migrations) with PostgreSQL's types. Each belongs to one
-- storage, and every query names it. manifest_text is stored without
-- signatures. Times are Unix nanoseconds (BIGINT), 0 meaning "not set";
-- names "" never clash (the rule is kept by the engine under an advisory
-- lock, not by an index: only live collections count).
--
-- Text columns use the "C" collation: comparisons and ORDER BY are byte
-- order whatever the database's locale (as SQLite's BINARY, and as Go
-- compares strings), ILIKE folds ASCII letters only, and the btree
-- indexes serve LIKE 'prefix%'. properties is JSON (kept verbatim,
-- checked to be JSON); storage_classes_desired is a text array.
CREATE TABLE collections (
    uuid                    TEXT COLLATE "C" PRIMARY KEY,
    storage                 TEXT COLLATE "C" NOT NULL,
    owner_uuid              TEXT COLLATE "C" NOT NULL,
    name                    TEXT COLLATE "C" NOT NULL DEFAULT '',
    description             TEXT COLLATE "C" NOT NULL DEFAULT '',
    manifest_text           TEXT COLLATE "C" NOT NULL,
    portable_data_hash      TEXT COLLATE "C" NOT NULL,
    replication_desired     INTEGER NOT NULL DEFAULT 0,
    storage_classes_desired TEXT[] COLLATE "C" NOT NULL DEFAULT '{}',
    properties              JSON NOT NULL DEFAULT '{}',
    file_count              BIGINT NOT NULL DEFAULT 0,
    file_size_total         BIGINT NOT NULL DEFAULT 0,
    created_at              BIGINT NOT NULL,
    modified_at             BIGINT NOT NULL,
    modified_by_user_uuid   TEXT COLLATE "C" NOT NULL DEFAULT '',
    trash_at                BIGINT NOT NULL DEFAULT 0,
    delete_at               BIGINT NOT NULL DEFAULT 0,
    version                 BIGINT NOT NULL
);
CREATE INDEX collections_pdh ON collections (storage, portable_data_hash);
CREATE INDEX collections_name ON collections (storage, owner_uuid, name);
CREATE INDEX collections_modified ON collections (storage, modified_at);

-- +goose Down
DROP TABLE collections;
