-- The consent ledger becomes a verifiable log: every event one leaf of an RFC 9162 Merkle
-- tree, in the order a sequencer takes committed events, with signed checkpoints.

-- HMAC-SHA256 of the address under the event's salt: the leaf commits to who, and erasure
-- (dropping the salt) leaves nothing that links the leaf to an address.
ALTER TABLE consent_events ADD COLUMN email_digest TEXT NOT NULL DEFAULT '';

CREATE TABLE consent_leaves (
    leaf_index BIGINT PRIMARY KEY NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    leaf_hash BLOB NOT NULL
);

-- Roots of the tree's perfect subtrees above the leaves (level 1: two leaves), so that a
-- proof is read, not recomputed from every leaf.
CREATE TABLE consent_tree_nodes (
    level INTEGER NOT NULL,
    node_index BIGINT NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, node_index)
);

-- Committed events waiting for their leaf. The events of the hash chain that came before
-- wait here too, so they become the first leaves, in their order.
CREATE TABLE consent_unsequenced (
    event_id TEXT PRIMARY KEY NOT NULL,
    seq BIGINT NOT NULL
);
CREATE INDEX consent_unsequenced_seq ON consent_unsequenced (seq);
INSERT INTO consent_unsequenced (event_id, seq) SELECT id, seq FROM consent_events;

-- Every checkpoint signed, as the signed note published.
CREATE TABLE consent_checkpoints (
    tree_size BIGINT PRIMARY KEY NOT NULL,
    root_hash BLOB NOT NULL,
    note TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);
