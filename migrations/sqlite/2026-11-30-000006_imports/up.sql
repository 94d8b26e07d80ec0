-- Where a bought, rented or migrated list came from: stored once, named by every consent
-- event its import produced.
CREATE TABLE provenance_manifests (
    id TEXT PRIMARY KEY NOT NULL,
    supplier TEXT NOT NULL,
    collected_on TEXT NOT NULL,
    consent_text TEXT NOT NULL,
    brand_named BOOLEAN NOT NULL,
    partners_shown TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

-- An import: its options, its file, how far it got (committed with the rows), its report.
CREATE TABLE import_jobs (
    id TEXT PRIMARY KEY NOT NULL,
    status TEXT NOT NULL,
    format TEXT NOT NULL,
    options TEXT NOT NULL,
    file_path TEXT,
    file_bytes BIGINT NOT NULL,
    records_done BIGINT NOT NULL,
    imported BIGINT NOT NULL,
    updated BIGINT NOT NULL,
    duplicates BIGINT NOT NULL,
    suppressed BIGINT NOT NULL,
    invalid BIGINT NOT NULL,
    errors TEXT NOT NULL,
    failure TEXT,
    lease_until TIMESTAMP,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE INDEX import_jobs_status ON import_jobs (status);

ALTER TABLE consent_events ADD COLUMN manifest_id TEXT REFERENCES provenance_manifests(id);
