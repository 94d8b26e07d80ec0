-- Co-registration partners: who they are, what people see on the form, where their leads
-- go, and what happens to the leads they send us.
CREATE TABLE partners (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    legal_name TEXT NOT NULL,
    description TEXT NOT NULL,
    privacy_policy_url TEXT NOT NULL,
    webhook_url TEXT,
    webhook_secret TEXT,
    inbound_policy TEXT NOT NULL,
    inbound_lists TEXT NOT NULL,
    share_plugin TEXT,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- A partner's keys to /partner/v1; only a hash of each secret is kept.
CREATE TABLE partner_keys (
    id TEXT PRIMARY KEY NOT NULL,
    partner_id TEXT NOT NULL REFERENCES partners(id),
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at TIMESTAMP NOT NULL,
    last_used_at TIMESTAMP,
    revoked_at TIMESTAMP
);
CREATE INDEX partner_keys_partner ON partner_keys (partner_id);

-- Leads exchanged with partners: `outbound` (shared with the partner, the payload its hook
-- mapped) or `inbound` (received from the partner, idempotent by the partner's lead id).
CREATE TABLE partner_leads (
    id TEXT PRIMARY KEY NOT NULL,
    partner_id TEXT NOT NULL REFERENCES partners(id),
    contact_id TEXT,
    direction TEXT NOT NULL,
    partner_lead_id TEXT,
    status TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX partner_leads_theirs ON partner_leads (partner_id, direction, partner_lead_id);
CREATE INDEX partner_leads_contact ON partner_leads (contact_id);
CREATE INDEX partner_leads_partner ON partner_leads (partner_id, direction, id);

-- Integrators' subscriptions to events.
CREATE TABLE webhook_subscriptions (
    id TEXT PRIMARY KEY NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    event_types TEXT NOT NULL,
    description TEXT NOT NULL,
    active BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- The outbox of events for partners and subscriptions, written in the transaction that
-- caused them and delivered (signed, retried, leased) by a worker on every instance.
-- A partner without a webhook URL pulls its events: their status stays `pull`.
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY NOT NULL,
    target TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    lead_id TEXT,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_until TIMESTAMP,
    last_error TEXT,
    created_at TIMESTAMP NOT NULL,
    delivered_at TIMESTAMP
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_target ON webhook_deliveries (target, id);
CREATE INDEX webhook_deliveries_lead ON webhook_deliveries (lead_id);

-- Every attempt to deliver, with what the receiver answered.
CREATE TABLE delivery_attempts (
    id TEXT PRIMARY KEY NOT NULL,
    delivery_id TEXT NOT NULL REFERENCES webhook_deliveries(id),
    attempted_at TIMESTAMP NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code INTEGER,
    error TEXT
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id);

-- Post-signup surveys and the answers people gave.
CREATE TABLE surveys (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    title TEXT NOT NULL,
    intro TEXT NOT NULL,
    questions TEXT NOT NULL,
    plugin TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

CREATE TABLE survey_responses (
    id TEXT PRIMARY KEY NOT NULL,
    survey_id TEXT NOT NULL REFERENCES surveys(id),
    contact_id TEXT NOT NULL,
    answers TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    completed_at TIMESTAMP
);
CREATE INDEX survey_responses_contact ON survey_responses (contact_id);
CREATE INDEX survey_responses_survey ON survey_responses (survey_id, id);

-- Evidence that is neither personal nor a consent text: the partner list shown beside a
-- partner box, a partner's proof (when and how it collected the lead). Hashed only when present.
ALTER TABLE consent_events ADD COLUMN proof TEXT;
