DROP TABLE segments;
DROP TABLE plugin_versions;
DROP TABLE plugins;
