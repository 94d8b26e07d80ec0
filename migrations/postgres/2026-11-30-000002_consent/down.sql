DROP TABLE outbox;
DROP TABLE confirmations;
DROP TABLE form_versions;
DROP TABLE forms;
DROP TABLE suppressions;
DROP TABLE consent_texts;
DROP TABLE consent_events;
