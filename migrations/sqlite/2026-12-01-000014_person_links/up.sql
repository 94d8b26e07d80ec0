-- Preference links signed before `revoked_at` no longer open the preference centre.
-- Gone with the contact: an erased person has no links left to revoke.
CREATE TABLE contact_link_revocations (
    contact_id TEXT PRIMARY KEY REFERENCES contacts (id) ON DELETE CASCADE,
    revoked_at TIMESTAMP NOT NULL
);

-- A person's request, from the preference centre, to download or erase their data: it is
-- carried out only through the single-use link mailed to the address.
CREATE TABLE data_requests (
    id TEXT PRIMARY KEY,
    contact_id TEXT NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    action TEXT NOT NULL CHECK (action IN ('download', 'erase')),
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    used_at TIMESTAMP
);
CREATE INDEX data_requests_contact ON data_requests (contact_id);
