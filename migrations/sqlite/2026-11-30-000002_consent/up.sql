-- The consent ledger: append-only, hash-chained in `seq` order.
CREATE TABLE consent_events (
    id TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL UNIQUE,
    -- No foreign key: events outlive an erased contact, with their personal fields redacted.
    contact_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('granted', 'confirmed', 'withdrawn')),
    basis TEXT NOT NULL,
    requires_confirmation INTEGER NOT NULL,
    method TEXT NOT NULL,
    form_id TEXT,
    form_version INTEGER,
    consent_text_sha256 TEXT,
    actor TEXT NOT NULL,
    ip TEXT,
    user_agent TEXT,
    source_url TEXT,
    evidence_salt TEXT,
    ip_digest TEXT NOT NULL,
    user_agent_digest TEXT NOT NULL,
    source_url_digest TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX consent_events_contact ON consent_events (contact_id, seq);

-- Consent texts by their SHA-256, so that each exact wording is kept once.
CREATE TABLE consent_texts (
    sha256 TEXT PRIMARY KEY NOT NULL,
    text TEXT NOT NULL
);

-- Addresses that must not be mailed or re-added without a confirmed double opt-in,
-- as a keyed hash (HMAC-SHA256 with a server secret) of the lower-cased address.
CREATE TABLE suppressions (
    email_hash TEXT PRIMARY KEY NOT NULL,
    reason TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE forms (
    id TEXT PRIMARY KEY NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    current_version INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every version of a form, as shown to people; events point at the one they saw.
CREATE TABLE form_versions (
    form_id TEXT NOT NULL REFERENCES forms (id) ON DELETE CASCADE,
    version INTEGER NOT NULL,
    definition TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (form_id, version)
);

-- Double opt-in requests waiting for the person's click.
CREATE TABLE confirmations (
    id TEXT PRIMARY KEY NOT NULL,
    contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    form_id TEXT,
    form_version INTEGER,
    purposes TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    confirmed_at TIMESTAMP
);
CREATE INDEX confirmations_contact ON confirmations (contact_id);
CREATE INDEX confirmations_created ON confirmations (created_at);

-- Outgoing mail, written in the transaction that causes it and sent by a worker.
CREATE TABLE outbox (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT NOT NULL,
    recipient_key TEXT NOT NULL,
    sender TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    locked_until TIMESTAMP,
    sent_at TIMESTAMP,
    failed_at TIMESTAMP,
    last_error TEXT
);
CREATE INDEX outbox_due ON outbox (sent_at, next_attempt_at);
CREATE INDEX outbox_recipient ON outbox (recipient_key, kind, created_at);
