ALTER TABLE contacts DROP COLUMN locale;
DROP TABLE brands;
