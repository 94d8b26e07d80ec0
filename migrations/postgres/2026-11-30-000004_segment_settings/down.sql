ALTER TABLE segments DROP COLUMN settings;
