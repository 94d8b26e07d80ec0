-- Rhai scripts managed through the API; every node reads them from here.
CREATE TABLE plugins (
    name TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

-- Every version of every plugin: who changed what, when.
CREATE TABLE plugin_versions (
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    description TEXT NOT NULL,
    source TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (name, version)
);

-- A segment is a Rhai predicate over a contact: inline, or a plugin's `matches` hook.
CREATE TABLE segments (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    script TEXT,
    plugin TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
