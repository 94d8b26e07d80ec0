DROP TABLE contact_lists;
DROP TABLE contact_tags;
DROP TABLE contacts;
DROP TABLE lists;
DROP TABLE api_keys;
DROP TABLE users;
DROP TABLE server_secrets;
