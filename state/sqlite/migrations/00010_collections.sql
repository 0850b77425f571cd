-- +goose Up
-- Collections of the Arvados API (arvapi). Each belongs to one storage, and
-- every query names it. manifest_text is stored without signatures. Times
-- are Unix nanoseconds, 0 meaning "not set"; names "" never clash.
CREATE TABLE collections (
    uuid                    TEXT PRIMARY KEY,
    storage                 TEXT NOT NULL,
    owner_uuid              TEXT NOT NULL,
    name                    TEXT NOT NULL DEFAULT '',
    description             TEXT NOT NULL DEFAULT '',
    manifest_text           TEXT NOT NULL,
    portable_data_hash      TEXT NOT NULL,
    replication_desired     INTEGER NOT NULL DEFAULT 0,
    storage_classes_desired TEXT NOT NULL DEFAULT '[]',
    properties              TEXT NOT NULL DEFAULT '{}',
    file_count              INTEGER NOT NULL DEFAULT 0,
    file_size_total         INTEGER NOT NULL DEFAULT 0,
    created_at              INTEGER NOT NULL,
    modified_at             INTEGER NOT NULL,
    modified_by_user_uuid   TEXT NOT NULL DEFAULT '',
    trash_at                INTEGER NOT NULL DEFAULT 0,
    delete_at               INTEGER NOT NULL DEFAULT 0,
    version                 INTEGER NOT NULL
);
CREATE INDEX collections_pdh ON collections (storage, portable_data_hash);
CREATE INDEX collections_name ON collections (storage, owner_uuid, name);
CREATE INDEX collections_modified ON collections (storage, modified_at);

-- +goose Down
DROP TABLE collections;
