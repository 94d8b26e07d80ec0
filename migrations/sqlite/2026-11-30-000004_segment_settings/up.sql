-- A segment bound to a plugin may set the plugin's settings (JSON object).
ALTER TABLE segments ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
