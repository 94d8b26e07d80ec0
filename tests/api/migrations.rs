//! The two migration trees (SQLite and PostgreSQL) must build the same schema: the same
//! migrations by name, and after them the same tables, columns and indexes. Read from the
//! SQL itself, so that it holds on either suite and fails the moment one tree drifts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What a tree builds: each table's columns, and each index as (table, unique, columns).
#[derive(Debug, Default, PartialEq)]
struct Schema {
    tables: BTreeMap<String, BTreeSet<String>>,
    indexes: BTreeMap<String, (String, bool, String)>,
}

fn migration_names(tree: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(tree)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn schema_of(tree: &Path) -> Schema {
    let mut schema = Schema::default();
    for name in migration_names(tree) {
        let sql = std::fs::read_to_string(tree.join(&name).join("up.sql")).unwrap();
        let sql: String = sql.lines().map(|line| line.split("--").next().unwrap_or("")).collect::<Vec<_>>().join(" ");
        for statement in sql.split(';') {
            apply(&mut schema, &statement.split_whitespace().collect::<Vec<_>>().join(" "), &name);
        }
    }
    schema
}

fn apply(schema: &mut Schema, statement: &str, migration: &str) {
    let words: Vec<&str> = statement.split(' ').collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_uppercase()).collect();
    let at = |i: usize| upper.get(i).map(String::as_str).unwrap_or("");
    let skip_if_not_exists = |i: usize| if at(i) == "IF" { i + 3 } else { i };
    match (at(0), at(1)) {
        ("CREATE", "TABLE") => {
            let i = skip_if_not_exists(2);
            let table = words[i].split('(').next().unwrap().to_lowercase();
            let body = &statement[statement.find('(').unwrap() + 1..statement.rfind(')').unwrap()];
            let columns = top_level_items(body)
                .into_iter()
                .filter_map(|item| item.split_whitespace().next().map(str::to_lowercase))
                .filter(|first| !["primary", "unique", "foreign", "check", "constraint"].contains(&first.as_str()))
                .collect();
            schema.tables.insert(table, columns);
        }
        ("ALTER", "TABLE") if at(3) == "ADD" => {
            let column = if at(4) == "COLUMN" { words[5] } else { words[4] };
            let table = words[2].to_lowercase();
            let columns = schema.tables.get_mut(&table).unwrap_or_else(|| panic!("{migration}: no table {table}"));
            columns.insert(column.to_lowercase());
        }
        ("ALTER", "TABLE") if at(3) == "DROP" => {
            let column = if at(4) == "COLUMN" { words[5] } else { words[4] };
            schema.tables.get_mut(&words[2].to_lowercase()).map(|columns| columns.remove(&column.to_lowercase()));
        }
        ("CREATE", "INDEX") | ("CREATE", "UNIQUE") => {
            let unique = at(1) == "UNIQUE";
            let i = skip_if_not_exists(if unique { 3 } else { 2 });
            let on = upper.iter().position(|w| w == "ON").unwrap();
            let table = words[on + 1].split('(').next().unwrap().to_lowercase();
            let columns = &statement[statement.find('(').unwrap()..];
            schema.indexes.insert(words[i].to_lowercase(), (table, unique, columns.to_lowercase()));
        }
        ("DROP", "TABLE") => {
            schema.tables.remove(&words[skip_if_not_exists(2)].to_lowercase());
        }
        ("DROP", "INDEX") => {
            schema.indexes.remove(&words[skip_if_not_exists(2)].to_lowercase());
        }
        // Sequences are how PostgreSQL numbers; SQLite numbers by a table of its own.
        ("CREATE", "SEQUENCE") | ("", _) => {}
        // Data, not schema.
        (_, _) if ["INSERT", "UPDATE", "DELETE", "SELECT"].contains(&at(0)) => {}
        _ => panic!("{migration}: a statement this check does not read: {statement}"),
    }
}

/// The comma-separated items of a CREATE TABLE body, commas inside parentheses kept.
fn top_level_items(body: &str) -> Vec<String> {
    let (mut items, mut current, mut depth) = (Vec::new(), String::new(), 0);
    for c in body.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    items.push(current);
    items
}

#[test]
fn the_two_migration_trees_define_the_same_tables_columns_and_indexes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let (sqlite, postgres) = (root.join("sqlite"), root.join("postgres"));
    assert_eq!(migration_names(&sqlite), migration_names(&postgres), "a migration goes in both trees under one name");
    let (sqlite, postgres) = (schema_of(&sqlite), schema_of(&postgres));
    assert!(sqlite.tables.len() > 20 && sqlite.indexes.len() > 10, "the check read the trees: {sqlite:?}");
    for (table, columns) in &sqlite.tables {
        assert_eq!(Some(columns), postgres.tables.get(table), "table {table}: SQLite and PostgreSQL differ");
    }
    assert_eq!(
        sqlite.tables.keys().collect::<Vec<_>>(),
        postgres.tables.keys().collect::<Vec<_>>(),
        "the trees define different tables"
    );
    assert_eq!(sqlite.indexes, postgres.indexes, "the trees define different indexes");
}

#[test]
fn the_tree_check_sees_a_column_one_tree_lacks() {
    let mut sqlite = Schema::default();
    let mut postgres = Schema::default();
    apply(&mut sqlite, "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER CHECK (n IN (1, 2)), UNIQUE (id, n))", "m");
    apply(&mut postgres, "CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER CHECK (n IN (1, 2)), UNIQUE (id, n))", "m");
    assert_eq!(sqlite, postgres);
    assert_eq!(sqlite.tables["t"], BTreeSet::from(["id".to_owned(), "n".to_owned()]));
    apply(&mut postgres, "ALTER TABLE t ADD COLUMN extra TEXT", "m");
    assert_ne!(sqlite, postgres);
    apply(&mut sqlite, "ALTER TABLE t ADD COLUMN extra TEXT", "m");
    apply(&mut sqlite, "CREATE UNIQUE INDEX t_n ON t (n)", "m");
    apply(&mut postgres, "CREATE INDEX t_n ON t (n)", "m");
    assert_ne!(sqlite, postgres, "a unique index and a plain one differ");
}
