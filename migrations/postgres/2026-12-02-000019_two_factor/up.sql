ALTER TABLE users ADD COLUMN totp_secret TEXT;
ALTER TABLE users ADD COLUMN totp_last_step BIGINT;
ALTER TABLE console_sessions ADD COLUMN second_factor_pending BOOLEAN NOT NULL DEFAULT FALSE;
