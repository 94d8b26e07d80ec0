-- The contact's fields a signup for a known address submitted: they wait with the
-- confirmation request and apply when the person confirms.
ALTER TABLE confirmations ADD COLUMN contact_values TEXT;
