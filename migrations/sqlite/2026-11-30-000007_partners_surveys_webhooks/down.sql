ALTER TABLE consent_events DROP COLUMN proof;
DROP TABLE survey_responses;
DROP TABLE surveys;
DROP TABLE delivery_attempts;
DROP TABLE webhook_deliveries;
DROP TABLE webhook_subscriptions;
DROP TABLE partner_leads;
DROP TABLE partner_keys;
DROP TABLE partners;
