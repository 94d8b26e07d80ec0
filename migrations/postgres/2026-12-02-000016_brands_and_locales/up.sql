-- Brands: who is asking, on every public page and system mail. A form names its brand
-- in its definition; one brand may be the default of everything that names none. The
-- logo is stored as base64 text (at most 200 KiB of image), so both databases keep it
-- in the same portable column type.
CREATE TABLE brands (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    legal_name TEXT NOT NULL,
    postal_address TEXT NOT NULL,
    privacy_policy_url TEXT NOT NULL,
    accent_color TEXT,
    background_color TEXT,
    footer TEXT,
    logo TEXT,
    logo_type TEXT,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE UNIQUE INDEX brands_name ON brands (name);
-- At most one default brand, held by the database itself.
CREATE UNIQUE INDEX brands_one_default ON brands (is_default) WHERE is_default = 1;

-- The language a person signed up in: their later pages and mails speak it.
ALTER TABLE contacts ADD COLUMN locale TEXT;
