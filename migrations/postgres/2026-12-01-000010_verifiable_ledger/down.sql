DROP SEQUENCE consent_event_seq;
DROP TABLE consent_checkpoints;
DROP TABLE consent_unsequenced;
DROP TABLE consent_tree_nodes;
DROP TABLE consent_leaves;
ALTER TABLE consent_events DROP COLUMN email_digest;
