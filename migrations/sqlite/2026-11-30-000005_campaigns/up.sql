-- A campaign: what is sent (templates), to whom (lists, segment, kind, purpose) and when.
CREATE TABLE campaigns (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_address TEXT NOT NULL,
    reply_to TEXT,
    html_body TEXT,
    text_body TEXT NOT NULL,
    lists TEXT NOT NULL,
    segment_id TEXT REFERENCES segments(id),
    kind TEXT NOT NULL,
    purpose TEXT NOT NULL,
    policy_plugin TEXT,
    track_opens BOOLEAN NOT NULL,
    track_clicks BOOLEAN NOT NULL,
    track_individual BOOLEAN NOT NULL,
    complaint_threshold DOUBLE NOT NULL,
    status TEXT NOT NULL,
    status_reason TEXT,
    scheduled_at TIMESTAMP,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    lease_until TIMESTAMP,
    opens BIGINT NOT NULL,
    clicks BIGINT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE INDEX campaigns_status ON campaigns (status, scheduled_at);

-- One row per contact the audience held: excluded with the policy's reason, or to send.
-- The id is the Message-ID's local part, so a message sent twice after a crash is one
-- message to the receiving side.
CREATE TABLE campaign_recipients (
    id TEXT PRIMARY KEY NOT NULL,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
    contact_id TEXT,
    email TEXT NOT NULL,
    list_id TEXT,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    lease_until TIMESTAMP,
    sent_at TIMESTAMP,
    last_error TEXT,
    bounced_at TIMESTAMP,
    complained_at TIMESTAMP,
    unsubscribed_at TIMESTAMP,
    opened_at TIMESTAMP,
    clicked_at TIMESTAMP,
    UNIQUE (campaign_id, contact_id)
);
CREATE INDEX campaign_recipients_due ON campaign_recipients (campaign_id, status, next_attempt_at);
CREATE INDEX campaign_recipients_contact ON campaign_recipients (contact_id);
CREATE INDEX campaign_recipients_sent ON campaign_recipients (sent_at);

-- Bounces and complaints as reported by the mail provider; the address as a keyed hash.
CREATE TABLE delivery_events (
    id TEXT PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    email_hash TEXT NOT NULL,
    campaign_id TEXT,
    recipient_id TEXT,
    detail TEXT NOT NULL,
    occurred_at TIMESTAMP NOT NULL
);
CREATE INDEX delivery_events_hash ON delivery_events (email_hash, kind);
CREATE INDEX delivery_events_time ON delivery_events (occurred_at);
