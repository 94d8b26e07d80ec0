CREATE INDEX consent_events_time ON consent_events (occurred_at);
