ALTER TABLE import_jobs DROP COLUMN records_expected;
