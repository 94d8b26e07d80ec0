-- The churn chart reads the consent events of a period: this index holds all it reads.
CREATE INDEX consent_events_time ON consent_events (occurred_at, purpose, action, requires_confirmation, method);
