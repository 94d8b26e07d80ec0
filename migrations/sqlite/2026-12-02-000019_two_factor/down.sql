ALTER TABLE console_sessions DROP COLUMN second_factor_pending;
ALTER TABLE users DROP COLUMN totp_last_step;
ALTER TABLE users DROP COLUMN totp_secret;
