ALTER TABLE confirmations DROP COLUMN contact_values;
