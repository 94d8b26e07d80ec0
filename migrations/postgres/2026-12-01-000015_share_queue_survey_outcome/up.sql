-- A lead to share is written with the consent that allows it (status `queued`), and its
-- `share` hook runs after that transaction: whoever runs it holds the lead until
-- `lease_until`, so that a crash leaves it to be taken again, and only the holder of the
-- lease records the outcome (a lead is never shared twice).
ALTER TABLE partner_leads ADD COLUMN lease_until TIMESTAMP;
CREATE INDEX partner_leads_queued ON partner_leads (status, lease_until);

-- What the completion of a survey came to: `applied` (with the updates made to the
-- contact) or `refused` (with the reason), for admins to see.
ALTER TABLE survey_responses ADD COLUMN outcome TEXT;
ALTER TABLE survey_responses ADD COLUMN updates TEXT;
ALTER TABLE survey_responses ADD COLUMN error TEXT;
