-- Access tokens carry the generation they were issued in; changing the password moves
-- it on, so that every token issued before stops working.
ALTER TABLE users ADD COLUMN session_generation BIGINT NOT NULL DEFAULT 0;
