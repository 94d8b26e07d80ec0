DROP INDEX consent_events_time;
