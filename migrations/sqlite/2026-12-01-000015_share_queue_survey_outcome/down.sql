ALTER TABLE survey_responses DROP COLUMN error;
ALTER TABLE survey_responses DROP COLUMN updates;
ALTER TABLE survey_responses DROP COLUMN outcome;
DROP INDEX partner_leads_queued;
ALTER TABLE partner_leads DROP COLUMN lease_until;
