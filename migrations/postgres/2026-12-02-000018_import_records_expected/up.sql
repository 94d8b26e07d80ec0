ALTER TABLE import_jobs ADD COLUMN records_expected BIGINT;
