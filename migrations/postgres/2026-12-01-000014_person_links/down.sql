DROP TABLE data_requests;
DROP TABLE contact_link_revocations;
