//! The layers, held by a test: data flows `http → services → {storage, plugins, mail} →
//! domain`, and each outside library belongs to one layer (actix-web and utoipa to http,
//! diesel to storage, rhai to plugins, lettre to mail). A source file that names a layer or
//! a library its own layer may not use fails `cargo test`, with the file and the line.
//! Services use each other one way only: a cycle among them fails too, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What the files under a folder of `src/` (or one file) may not name.
struct Layer {
    path: &'static str,
    forbidden: &'static [&'static str],
}

const HTTP_ONLY: [&str; 2] = ["actix_web", "utoipa"];

const LAYERS: &[Layer] = &[
    Layer {
        path: "domain",
        forbidden: &[
            "crate::http",
            "crate::services",
            "crate::storage",
            "crate::plugins",
            "crate::mail",
            "crate::settings",
            "crate::cli",
            "crate::startup",
            "actix_web",
            "utoipa",
            "diesel",
            "rhai",
            "lettre",
        ],
    },
    Layer {
        path: "storage",
        forbidden: &[
            "crate::http",
            "crate::services",
            "crate::plugins",
            "crate::mail",
            "crate::cli",
            "crate::startup",
            "actix_web",
            "utoipa",
            "rhai",
            "lettre",
        ],
    },
    Layer {
        path: "plugins",
        forbidden: &[
            "crate::http",
            "crate::services",
            "crate::storage",
            "crate::mail",
            "crate::cli",
            "crate::startup",
            "actix_web",
            "utoipa",
            "diesel",
            "lettre",
        ],
    },
    Layer {
        path: "mail",
        forbidden: &[
            "crate::http",
            "crate::services",
            "crate::storage",
            "crate::plugins",
            "crate::cli",
            "crate::startup",
            "actix_web",
            "utoipa",
            "diesel",
            "rhai",
        ],
    },
    Layer {
        path: "services",
        forbidden: &["crate::http", "crate::cli", "crate::startup", "actix_web", "utoipa", "diesel", "rhai", "lettre"],
    },
    Layer {
        path: "http",
        forbidden: &["crate::storage", "crate::plugins", "crate::cli", "crate::startup", "diesel", "rhai", "lettre"],
    },
    // Shared by every layer: the error type knows no layer and no library above domain.
    Layer { path: "error.rs", forbidden: &HTTP_ONLY },
    Layer { path: "threads.rs", forbidden: &HTTP_ONLY },
];

/// Uses not yet moved to their layer, each with why it is here. The test also fails when
/// one of these no longer happens, so that the list only shrinks.
const NOT_YET: &[(&str, &str)] = &[];

fn source_files(folder: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            source_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The code of a line, without its comment (a `//` outside a string).
fn code_of(line: &str) -> &str {
    let mut in_string = false;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match c {
            '"' if previous != '\\' => in_string = !in_string,
            '/' if !in_string && previous == '/' => return &line[..at - 1],
            _ => {}
        }
        previous = c;
    }
    line
}

/// What follows each `prefix` in a line: the rest of the line, or each name of a group
/// (`prefix{a, b::c}` gives `a` and `b::c`).
fn following(code: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in code.match_indices(prefix) {
        // `super::` inside `super::super::` is the longer path's, not one of its own.
        if code[..at].ends_with("::") {
            continue;
        }
        let rest = &code[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            found.extend(inner.split(',').map(|n| n.trim().to_owned()).filter(|n| !n.is_empty()));
        } else {
            found.push(rest.to_owned());
        }
    }
    found
}

/// The first name of a path (`signup::submit(` gives `signup`).
fn head(path: &str) -> &str {
    path.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("")
}

/// The paths a line names: `crate::x…` (each name inside `crate::{…}` too) and the roots
/// of outside crates (`rhai::…`, `diesel::…`).
fn named(code: &str) -> Vec<String> {
    let mut names: Vec<String> = following(code, "crate::").into_iter().map(|n| format!("crate::{n}")).collect();
    for library in ["actix_web", "utoipa", "diesel", "rhai", "lettre"] {
        let bounded = code.match_indices(library).any(|(at, _)| {
            let before = code[..at].chars().next_back();
            let after = &code[at + library.len()..];
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                && (after.starts_with("::") || after.starts_with(';') || after.starts_with(" as "))
        });
        if bounded {
            names.push(library.to_owned());
        }
    }
    names
}

fn names_forbidden(name: &str, forbidden: &str) -> bool {
    name == forbidden || name.starts_with(&format!("{forbidden}::")) || name.starts_with(&format!("{forbidden} "))
}

#[test]
fn every_layer_uses_only_what_is_below_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut faults = Vec::new();
    let mut excused = std::collections::BTreeSet::new();
    for layer in LAYERS {
        let mut files = Vec::new();
        let path = root.join(layer.path);
        if path.is_dir() {
            source_files(&path, &mut files);
        } else {
            files.push(path);
        }
        assert!(!files.is_empty(), "src/{} holds no source file", layer.path);
        for file in files {
            let relative = file.strip_prefix(&root).unwrap_or(&file).to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            for (number, line) in text.lines().enumerate() {
                for name in named(code_of(line)) {
                    let Some(forbidden) = layer.forbidden.iter().find(|f| names_forbidden(&name, f)) else {
                        continue;
                    };
                    if NOT_YET.contains(&(relative.as_str(), forbidden)) {
                        excused.insert((relative.clone(), *forbidden));
                        continue;
                    }
                    faults.push(format!("src/{relative}:{}: {} uses {forbidden}", number + 1, layer.path));
                }
            }
        }
    }
    assert!(faults.is_empty(), "uses across the layers:\n{}", faults.join("\n"));
    let moved: Vec<_> = NOT_YET
        .iter()
        .filter(|(file, name)| !excused.contains(&(file.to_string(), *name)))
        .map(|(file, name)| format!("src/{file} no longer uses {name}: take it off NOT_YET"))
        .collect();
    assert!(moved.is_empty(), "{}", moved.join("\n"));
}

#[test]
fn the_scan_sees_grouped_and_plain_uses_and_skips_comments() {
    assert_eq!(named("use crate::{error::Result, storage::Db};"), ["crate::error::Result", "crate::storage::Db"]);
    assert_eq!(named("let x = rhai::Dynamic::UNIT;"), ["rhai"]);
    assert!(named(code_of("let y = 1; // rhai::Map in a comment")).is_empty());
    assert!(named("let note = \"a // b\"; use_rhai_like::x();").is_empty());
    assert!(names_forbidden("crate::storage::Db", "crate::storage"));
    assert!(!names_forbidden("crate::storage_like", "crate::storage"));
}

/// The service modules (a file or a folder of `src/services`) each one uses, read from
/// `crate::services::x` and `super::x` (`super::super::x` inside a folder).
fn service_uses(services: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    source_files(services, &mut files);
    let module_of = |file: &Path| {
        let relative = file.strip_prefix(services).ok()?;
        let first = relative.components().next()?.as_os_str().to_string_lossy().into_owned();
        let nested = relative.components().count() > 1;
        let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        (name != "mod").then_some((name, nested))
    };
    let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(f)).map(|(name, _)| name).collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let Some((module, nested)) = module_of(file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        // A file's own tests may use what they like.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        let sibling = if nested { "super::super::" } else { "super::" };
        for line in code.lines().map(code_of) {
            for path in following(line, "crate::services::").iter().chain(&following(line, sibling)) {
                let used = head(path);
                if used != module && modules.contains(used) {
                    uses.entry(module.clone()).or_default().insert(used.to_owned());
                }
            }
        }
    }
    uses
}

/// A cycle in `uses`, as the modules along it (the first again at the end), if any.
fn cycle(uses: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|m| m == module) {
            let mut found = path[at..].to_vec();
            found.push(module.to_owned());
            return Some(found);
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for used in uses.get(module).into_iter().flatten() {
            if let Some(found) = visit(used, uses, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    uses.keys().find_map(|module| visit(module, uses, &mut Vec::new(), &mut done))
}

#[test]
fn services_use_each_other_one_way_only() {
    let services = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/services");
    let uses = service_uses(&services);
    assert!(uses.len() > 20, "the scan found too few service modules: {uses:?}");
    assert!(uses["signup"].contains("confirmations"), "the scan misses uses: {:?}", uses["signup"]);
    if let Some(found) = cycle(&uses) {
        panic!("service modules use each other in a cycle: {}", found.join(" → "));
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = |edges: &[(&str, &str)]| {
        let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (from, to) in edges {
            uses.entry(from.to_string()).or_default().insert(to.to_string());
            uses.entry(to.to_string()).or_default();
        }
        uses
    };
    assert_eq!(cycle(&graph(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
    assert_eq!(
        cycle(&graph(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    assert_eq!(following("use super::{keys::Keys, mailer};", "super::"), ["keys::Keys", "mailer"]);
    assert_eq!(following("use super::super::keys::Keys;", "super::super::"), ["keys::Keys;"]);
    assert_eq!(following("x = a::super::b;", "super::"), Vec::<String>::new());
    assert_eq!(head("signup::submit(&services)"), "signup");
}
