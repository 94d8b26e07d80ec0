ALTER TABLE consent_events DROP COLUMN manifest_id;
DROP TABLE import_jobs;
DROP TABLE provenance_manifests;
