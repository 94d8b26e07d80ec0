//! Plugins: Rhai scripts in the `plugins/` folder (loaded at start) and scripts managed
//! through the API (stored with their versions, so every node runs the same ones, and a
//! change takes effect without a restart).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use figment::providers::Format;
use serde::Deserialize;
use serde_json::Value;

use crate::domain::ContactId;
use crate::error::{Error, FieldError, Result};
use crate::plugins::{Arguments, CallStats, PluginHost, Script, ScriptContact, ScriptError};
use crate::storage::models::utc;
use crate::storage::plugins::{self as repo, PluginRow};
use crate::storage::{self, Db};

/// Where a plugin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Shipped in the binary: the defaults a new install runs with.
    BuiltIn,
    /// `plugins/<name>/` on the server: read-only through the API; replaces a built-in
    /// plugin of the same name.
    Folder,
    /// Stored through the API.
    Api,
}

#[derive(Debug, Clone)]
pub struct Plugin {
    pub name: String,
    pub version: String,
    pub description: String,
    pub source: String,
    pub origin: Origin,
    /// The hooks (functions) the script defines.
    pub hooks: Vec<String>,
    pub settings: BTreeMap<String, Value>,
    pub updated_by: Option<String>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// A past version of an API plugin.
#[derive(Debug, Clone)]
pub struct PluginVersion {
    pub version: i32,
    pub description: String,
    pub source: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The known hooks with their parameters; a script may define any of them, and other
/// helper functions. A hook defined with another number of parameters is never called.
pub const HOOKS: &[(&str, &[&str])] = &[
    ("matches", &["contact"]),
    ("eligible", &["contact", "campaign"]),
    ("on_signup", &["submission", "form"]),
    ("share", &["lead", "partner"]),
    ("accept_lead", &["lead", "partner"]),
    ("next_question", &["answers", "survey"]),
    ("on_complete", &["contact", "answers"]),
];

/// The plugins shipped in the binary (the `plugins/` folder of the source tree), so that a
/// server started anywhere has its send policy and co-registration defaults.
const BUILT_IN: &[(&str, &str, &str)] = &[
    (
        "co-registration",
        include_str!("../../plugins/co-registration/plugin.toml"),
        include_str!("../../plugins/co-registration/main.rhai"),
    ),
    (
        "recent-professionals",
        include_str!("../../plugins/recent-professionals/plugin.toml"),
        include_str!("../../plugins/recent-professionals/main.rhai"),
    ),
    (
        "send-policy",
        include_str!("../../plugins/send-policy/plugin.toml"),
        include_str!("../../plugins/send-policy/main.rhai"),
    ),
];

#[derive(Debug, Deserialize)]
struct Manifest {
    name: String,
    version: String,
    #[serde(default)]
    description: String,
    /// The hooks the script promises to define, each checked against the script.
    #[serde(default)]
    hooks: Vec<String>,
    #[serde(default)]
    settings: BTreeMap<String, Value>,
}

/// The plugins the server runs from files: the built-in ones, replaced or added to by
/// those of the `plugins/` folder, read once at start.
#[derive(Debug, Default)]
pub struct FolderPlugins(BTreeMap<String, Plugin>);

impl FolderPlugins {
    /// The built-in plugins, then every `plugins/<name>/plugin.toml` with its `main.rhai`
    /// (a missing folder is no folder plugin), compiling each; a plugin that does not
    /// compile, or lacks a hook it declares, stops the start with its script, line and column.
    pub fn load(dir: &Path, host: &PluginHost) -> Result<Self> {
        let mut plugins = BTreeMap::new();
        for (_, plugin) in Self::built_in(host).into_iter().chain(Self::check(dir, host)) {
            let plugin = plugin?;
            plugins.insert(plugin.name.clone(), plugin);
        }
        Ok(Self(plugins))
    }

    /// Reads and checks every built-in plugin, answering each one's outcome by name.
    pub fn built_in(host: &PluginHost) -> Vec<(String, Result<Plugin>)> {
        BUILT_IN
            .iter()
            .map(|(folder, manifest, source)| {
                let label = format!("built-in plugin {folder}");
                (folder.to_string(), parse(&label, manifest, source.to_string(), Origin::BuiltIn, host))
            })
            .collect()
    }

    /// Reads and checks every plugin of a folder, answering each one's outcome by folder
    /// name (`consento plugins check`).
    pub fn check(dir: &Path, host: &PluginHost) -> Vec<(String, Result<Plugin>)> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        let mut folders: Vec<std::path::PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.join("plugin.toml").is_file()).collect();
        folders.sort();
        folders
            .into_iter()
            .map(|folder| {
                let name = folder.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                (name, Self::load_one(&folder, host))
            })
            .collect()
    }

    fn load_one(folder: &Path, host: &PluginHost) -> Result<Plugin> {
        let manifest_path = folder.join("plugin.toml");
        let manifest = std::fs::read_to_string(&manifest_path)
            .map_err(|e| Error::internal(format!("{}: {e}", manifest_path.display())))?;
        let source = std::fs::read_to_string(folder.join("main.rhai"))
            .map_err(|e| Error::internal(format!("{}/main.rhai: {e}", folder.display())))?;
        parse(&manifest_path.display().to_string(), &manifest, source, Origin::Folder, host)
    }

    pub fn get(&self, name: &str) -> Option<&Plugin> {
        self.0.get(name)
    }
}

/// A plugin from its manifest (`label` names it in errors) and script, compiled, with
/// every hook the manifest declares defined by the script with the hook's parameters.
fn parse(label: &str, manifest: &str, source: String, origin: Origin, host: &PluginHost) -> Result<Plugin> {
    let manifest: Manifest = figment::Figment::from(figment::providers::Toml::string(manifest))
        .extract()
        .map_err(|e| Error::internal(format!("{label}: {e}")))?;
    let script = host.compile(&manifest.name, &source).map_err(|e| Error::internal(e.describe()))?;
    let faults = undefined_hooks(&script, &manifest.hooks);
    if !faults.is_empty() {
        return Err(Error::internal(format!("plugin {}: {}", manifest.name, faults.join("; "))));
    }
    Ok(Plugin {
        hooks: hooks_of(&script),
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        source,
        origin,
        settings: manifest.settings,
        updated_by: None,
        updated_at: None,
    })
}

/// What is wrong with the hooks a manifest declares: unknown names, and hooks the script
/// does not define with the hook's parameters (which would never be called).
fn undefined_hooks(script: &Script, declared: &[String]) -> Vec<String> {
    declared
        .iter()
        .filter_map(|hook| {
            let Some((_, params)) = HOOKS.iter().find(|(name, _)| name == hook) else {
                let known: Vec<&str> = HOOKS.iter().map(|(name, _)| *name).collect();
                return Some(format!("declares hook {hook}, which is not a hook (hooks: {})", known.join(", ")));
            };
            if script.defines(hook, params.len()) {
                return None;
            }
            let wanted = format!("{hook}({})", params.join(", "));
            let defined: Vec<String> =
                script.functions().iter().filter(|f| f.name == *hook).map(ToString::to_string).collect();
            Some(if defined.is_empty() {
                format!("declares hook {hook} but main.rhai does not define {wanted}")
            } else {
                format!(
                    "declares hook {hook} but main.rhai defines {} instead of {wanted}: a hook takes {} parameter(s)",
                    defined.join(" and "),
                    params.len()
                )
            })
        })
        .collect()
}

/// The hooks a script defines with the hook's parameters.
fn hooks_of(script: &Script) -> Vec<String> {
    let mut hooks: Vec<String> = script
        .functions()
        .into_iter()
        .filter(|f| HOOKS.iter().any(|(name, params)| f.name == *name && f.params.len() == params.len()))
        .map(|f| f.name)
        .collect();
    hooks.sort();
    hooks.dedup();
    hooks
}

/// Why the API cannot `change` or `remove` a plugin of the binary or of the folder.
fn read_only(plugin: &Plugin, change: &str) -> String {
    match plugin.origin {
        Origin::BuiltIn if change == "remove" => {
            format!("{} is a built-in plugin; it cannot be removed, only replaced by a folder plugin", plugin.name)
        }
        Origin::BuiltIn => {
            format!("{} is a built-in plugin; to {change} it, put one of that name in the plugins folder", plugin.name)
        }
        Origin::Folder | Origin::Api => format!("{} is a plugin of the plugins folder; {change} it there", plugin.name),
    }
}

/// A compile error as a 422 naming the script, line and column.
pub fn script_rejected(error: ScriptError) -> Error {
    Error::Validation(vec![FieldError::new("source", error.describe())])
}

pub fn check_name(name: &str) -> std::result::Result<(), &'static str> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if valid { Ok(()) } else { Err("must be 1 to 64 characters of a-z, 0-9, - and _") }
}

fn from_row(row: PluginRow, host: &PluginHost) -> Plugin {
    let hooks = host.compile(&row.name, &row.source).map(|script| hooks_of(&script)).unwrap_or_default();
    Plugin {
        name: row.name,
        version: row.version.to_string(),
        description: row.description,
        source: row.source,
        origin: Origin::Api,
        hooks,
        settings: BTreeMap::new(),
        updated_by: Some(row.updated_by),
        updated_at: Some(utc(row.updated_at)),
    }
}

/// A plugin's name, description and script, as sent.
#[derive(Debug, Clone)]
pub struct PluginDraft {
    pub name: String,
    pub description: String,
    pub source: String,
}

/// Creates (version 1, `create`) or replaces (the next version) an API plugin. The
/// source must compile.
pub async fn save_plugin(
    db: &Db,
    scripts: &Scripts,
    draft: PluginDraft,
    author: String,
    create: bool,
) -> Result<Plugin> {
    let (host, folder) = (&scripts.host, &*scripts.folder);
    let PluginDraft { name, description, source } = draft;
    if let Some(plugin) = folder.get(&name) {
        return Err(Error::Conflict(read_only(plugin, "change")));
    }
    host.compile(&name, &source).map_err(script_rejected)?;
    let row = db
        .write(move |conn| {
            let current = repo::find_plugin(conn, &name)?;
            let now = storage::now();
            let (version, created_at) = match (&current, create) {
                (Some(_), true) => return Err(Error::Conflict(format!("a plugin named {name} exists"))),
                (None, false) => return Err(Error::NotFound(format!("there is no plugin {name}"))),
                (Some(current), false) => (current.version + 1, current.created_at),
                (None, true) => (1, now),
            };
            let row = PluginRow { name, version, description, source, updated_by: author, created_at, updated_at: now };
            repo::save_plugin(conn, &row)?;
            Ok(row)
        })
        .await?;
    Ok(from_row(row, host))
}

pub async fn find_plugin(db: &Db, scripts: &Scripts, name: String) -> Result<Plugin> {
    let (host, folder) = (&scripts.host, &*scripts.folder);
    if let Some(plugin) = folder.get(&name) {
        return Ok(plugin.clone());
    }
    let row = db.read(move |conn| Ok(repo::find_plugin(conn, &name)?)).await?;
    match row {
        Some(row) => Ok(from_row(row, host)),
        None => Err(Error::NotFound("there is no such plugin".to_owned())),
    }
}

/// What services that run hooks need: the script host and the folder plugins.
#[derive(Clone)]
pub struct Scripts {
    pub host: Arc<PluginHost>,
    pub folder: Arc<FolderPlugins>,
}

impl Scripts {
    /// The script host for `dir` (its imports resolve there) and its plugins: the built-in
    /// ones, overridden or added to by `dir`'s.
    pub fn load(dir: &Path, limits: crate::plugins::Limits) -> Result<Self> {
        let host = Arc::new(PluginHost::new(dir, limits));
        let folder = Arc::new(FolderPlugins::load(dir, &host)?);
        Ok(Self { host, folder })
    }

    /// Loads a plugin inside a transaction; see [`load_in`].
    pub fn load_in(&self, conn: &mut storage::DbConnection, name: &str) -> Result<Script> {
        load_in(conn, &self.host, &self.folder, name)
    }
}

/// Loads and compiles a plugin, with its settings, inside a transaction (for hooks that
/// decide what the transaction writes).
pub fn load_in(
    conn: &mut storage::DbConnection,
    host: &PluginHost,
    folder: &FolderPlugins,
    name: &str,
) -> Result<Script> {
    let plugin = match folder.get(name) {
        Some(plugin) => plugin.clone(),
        None => match repo::find_plugin(conn, name)? {
            Some(row) => from_row(row, host),
            None => return Err(Error::NotFound(format!("there is no plugin {name}"))),
        },
    };
    compiled(host, &plugin)
}

/// A plugin compiled, with its settings.
pub fn compiled(host: &PluginHost, plugin: &Plugin) -> Result<Script> {
    let script = host.compile(&plugin.name, &plugin.source).map_err(script_rejected)?;
    script.with_settings(&plugin.settings).map_err(|e| Error::internal(e.describe()))
}

/// Whether a plugin of this name exists (folder or API).
pub fn exists_in(conn: &mut storage::DbConnection, folder: &FolderPlugins, name: &str) -> Result<bool> {
    Ok(folder.get(name).is_some() || repo::find_plugin(conn, name)?.is_some())
}

pub async fn list_plugins(db: &Db, scripts: &Scripts) -> Result<Vec<Plugin>> {
    let (host, folder) = (&scripts.host, &*scripts.folder);
    let rows = db.read(|conn| Ok(repo::list_plugins(conn)?)).await?;
    let mut plugins: Vec<Plugin> = folder.0.values().cloned().collect();
    plugins.extend(rows.into_iter().map(|row| from_row(row, host)));
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(plugins)
}

pub async fn list_versions(db: &Db, name: String) -> Result<Vec<PluginVersion>> {
    let rows = db.read(move |conn| Ok(repo::list_plugin_versions(conn, &name)?)).await?;
    if rows.is_empty() {
        return Err(Error::NotFound("there is no such plugin".to_owned()));
    }
    Ok(rows
        .into_iter()
        .map(|row| PluginVersion {
            version: row.version,
            description: row.description,
            source: row.source,
            created_by: row.created_by,
            created_at: utc(row.created_at),
        })
        .collect())
}

pub async fn delete_plugin(db: &Db, folder: &FolderPlugins, name: String) -> Result<()> {
    if let Some(plugin) = folder.get(&name) {
        return Err(Error::Conflict(read_only(plugin, "remove")));
    }
    db.write(move |conn| {
        if repo::count_segments_using(conn, &name)? > 0 {
            return Err(Error::Conflict(format!("segments use the plugin {name}")));
        }
        if repo::delete_plugin(conn, &name)? == 0 {
            return Err(Error::NotFound(format!("there is no plugin {name}")));
        }
        Ok(())
    })
    .await
}

/// What compiling a script found.
#[derive(Debug, Clone)]
pub struct Validation {
    pub hooks: Vec<String>,
    pub functions: Vec<String>,
}

pub fn validate(host: &PluginHost, name: &str, source: &str) -> std::result::Result<Validation, ScriptError> {
    let script = host.compile(name, source)?;
    let mut functions: Vec<String> = script.functions().iter().map(ToString::to_string).collect();
    functions.sort();
    Ok(Validation { hooks: hooks_of(&script), functions })
}

/// The outcome of running a hook on sample input.
#[derive(Debug, Clone)]
pub struct DryRun {
    pub result: Value,
    pub stats: CallStats,
}

/// Runs a hook of a script on sample JSON arguments, changing nothing.
pub async fn dry_run(
    host: Arc<PluginHost>,
    name: String,
    source: String,
    hook: String,
    args: Vec<Value>,
) -> Result<DryRun> {
    tokio::task::spawn_blocking(move || {
        crate::threads::in_background(move || {
            let script = host.compile(&name, &source).map_err(script_rejected)?;
            let arity = args.len();
            let outcome = script.call(&host, &hook, &args).map_err(script_rejected)?;
            let (answer, stats) = outcome.ok_or_else(|| {
                Error::field("hook", format!("the script defines no {hook} taking {arity} argument(s)"))
            })?;
            // What a completion would refuse, a dry run refuses too, with the same reason.
            if hook == "on_complete" {
                crate::domain::survey::ProfileUpdates::from_answer(&name, answer.to_json())
                    .map_err(|fault| Error::field("result", fault))?;
            }
            Ok(DryRun { result: answer.to_json_or_text(), stats })
        })
        .unwrap_or_else(|| Err(Error::internal("the dry run panicked")))
    })
    .await
    .map_err(Error::internal)?
}

/// Runs a hook with each of the first `count` contacts (at most 100), changing nothing;
/// answers each contact's id with what the hook answered.
pub async fn dry_run_on_contacts(
    db: &Db,
    host: Arc<PluginHost>,
    name: String,
    source: String,
    hook: String,
    count: u32,
) -> Result<Vec<(ContactId, DryRun)>> {
    let count = i64::from(count.clamp(1, 100));
    let needs = crate::storage::contacts::ScanNeeds { tags: true, lists: true, consents: true };
    let conditions = crate::plugins::pushdown::SqlConditions::default();
    let scanned =
        db.read(move |conn| crate::storage::contacts::scan_batch(conn, None, count, needs, &conditions)).await?;
    let facts: Vec<crate::plugins::contact::ContactFacts> = scanned.into_iter().map(Into::into).collect();
    tokio::task::spawn_blocking(move || {
        let script = host.compile(&name, &source).map_err(script_rejected)?;
        let nothing_else = Arguments::default();
        facts
            .into_iter()
            .map(|facts| {
                let id = facts.id;
                let (answer, stats) = script
                    .call_with_contact(&host, &hook, &ScriptContact::new(facts), &nothing_else)
                    .map_err(script_rejected)?
                    .ok_or_else(|| Error::field("hook", format!("the script defines no {hook}(contact)")))?;
                Ok((id, DryRun { result: answer.to_json_or_text(), stats }))
            })
            .collect::<Result<Vec<_>>>()
    })
    .await
    .map_err(Error::internal)?
}

/// How long a scan of all contacts may take, whatever the per-call deadline.
pub const SCAN_DEADLINE: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::Limits;

    fn host() -> PluginHost {
        PluginHost::new(Path::new("/nonexistent"), Limits::default())
    }

    fn fault(error: Error) -> String {
        match error {
            Error::Internal(cause) => cause.to_string(),
            other => other.to_string(),
        }
    }

    #[test]
    fn every_plugin_of_the_source_tree_is_built_in_and_holds_its_declared_hooks() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins");
        let mut shipped: Vec<String> = std::fs::read_dir(&folder)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().join("plugin.toml").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        shipped.sort();
        let built_in: Vec<String> = BUILT_IN.iter().map(|(name, _, _)| name.to_string()).collect();
        assert_eq!(built_in, shipped, "BUILT_IN must list every folder of plugins/");
        for (name, outcome) in FolderPlugins::built_in(&host()) {
            let plugin = outcome.unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(plugin.origin, Origin::BuiltIn);
        }
    }

    #[test]
    fn a_declared_hook_must_be_defined_with_its_parameters() {
        let host = host();
        let manifest = "name = \"p\"\nversion = \"1\"\nhooks = [\"eligible\", \"matches\", \"sharing\"]\n";
        let error =
            parse("p", manifest, "fn matches(contact) { true }\nfn eligible(c) { true }".into(), Origin::Folder, &host)
                .err()
                .map(fault)
                .unwrap_or_default();
        assert!(error.contains("defines eligible(c) instead of eligible(contact, campaign)"), "{error}");
        assert!(error.contains("declares hook sharing, which is not a hook"), "{error}");
        assert!(!error.contains("hook matches"), "{error}");
        let missing = parse(
            "p",
            "name = \"p\"\nversion = \"1\"\nhooks = [\"eligible\"]\n",
            "fn matches(contact) { true }".into(),
            Origin::Folder,
            &host,
        )
        .err()
        .map(fault)
        .unwrap_or_default();
        assert!(missing.contains("does not define eligible(contact, campaign)"), "{missing}");
    }
}
