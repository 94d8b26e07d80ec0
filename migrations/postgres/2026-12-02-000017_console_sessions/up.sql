-- Sessions of people signed in to the console. The cookie holds a random secret; only
-- its SHA-256 is stored, so a copy of the database opens no session. A session ends at
-- `expires_at`, after `idle` minutes without a request, at sign-out, and when the user's
-- password changes (`user_generation` no longer matches).
CREATE TABLE console_sessions (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    user_generation BIGINT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    last_seen_at TIMESTAMP NOT NULL
);
CREATE INDEX console_sessions_user ON console_sessions (user_id);
