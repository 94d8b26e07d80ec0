//! An import's options, checked and turned into a plan before any row is read: the
//! columns and what each fills, the lists, the basis and the manifest.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::domain::consent::{ConsentBasis, Evidence};
use crate::domain::{ListId, Tag};
use crate::error::{Error, FieldError, Result};
use crate::storage;
use crate::storage::imports::ManifestRow;
use crate::storage::{Db, imports as repo};

/// What an import does with its file.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImportOptions {
    /// CSV: the delimiter; detected from the header line when not given.
    pub delimiter: Option<char>,
    /// `utf-8` or `windows-1252` (also for Latin-1); detected when not given.
    pub encoding: Option<String>,
    /// Column (or NDJSON key) → `email`, `company`, `country`, `tags`, `lists`,
    /// `attributes` (a JSON object), `attributes.<name>`, `status`, `suppressed` or
    /// `ignore`. Columns not named here: `email`, `company`, `country`, `tags`, `lists`,
    /// `attributes`, `status`, `suppressed` by their names, `id`, `created_at`,
    /// `updated_at` ignored, any other as an attribute. A row whose `status` says the
    /// person left (`unsubscribed`, `bounced`, `complained`, Mailchimp's `cleaned`) or
    /// whose `suppressed` is true becomes a suppression, never a subscription.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Lists (ids or names) every row joins.
    #[serde(default)]
    pub lists: Vec<String>,
    /// Tags every row gets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The legal basis recorded for each list a row joins; none: no consent is recorded.
    pub basis: Option<ConsentBasisName>,
    /// The consent text the people saw (for a basis without a manifest).
    pub consent_text: Option<String>,
    /// The provenance manifest (required for the `imported` basis).
    pub manifest_id: Option<String>,
}

/// A basis as written in options (kept as text so options stay readable when stored).
pub type ConsentBasisName = String;

/// Where a column goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    Email,
    Company,
    Country,
    Tags,
    Lists,
    Attributes,
    Attribute(String),
    /// `active`, `unsubscribed`, `bounced`, `complained` (and Mailchimp's words).
    Status,
    /// `true` when the address is on the suppression list.
    Suppressed,
    Ignore,
}

impl Target {
    pub(super) fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "email" => Target::Email,
            "company" => Target::Company,
            "country" => Target::Country,
            "tags" => Target::Tags,
            "lists" => Target::Lists,
            "attributes" => Target::Attributes,
            "status" => Target::Status,
            "suppressed" => Target::Suppressed,
            "ignore" => Target::Ignore,
            other => Target::Attribute(other.strip_prefix("attributes.").filter(|name| !name.is_empty())?.to_owned()),
        })
    }

    /// The target as options name it.
    pub(super) fn name(&self) -> String {
        match self {
            Target::Email => "email".to_owned(),
            Target::Company => "company".to_owned(),
            Target::Country => "country".to_owned(),
            Target::Tags => "tags".to_owned(),
            Target::Lists => "lists".to_owned(),
            Target::Attributes => "attributes".to_owned(),
            Target::Attribute(name) => format!("attributes.{name}"),
            Target::Status => "status".to_owned(),
            Target::Suppressed => "suppressed".to_owned(),
            Target::Ignore => "ignore".to_owned(),
        }
    }

    pub(super) fn default_for(column: &str) -> Self {
        match column.trim().to_lowercase().as_str() {
            "email" | "e-mail" | "email_address" => Target::Email,
            "company" => Target::Company,
            "country" => Target::Country,
            "tags" => Target::Tags,
            "lists" => Target::Lists,
            "attributes" => Target::Attributes,
            "status" => Target::Status,
            "suppressed" => Target::Suppressed,
            "id" | "created_at" | "updated_at" => Target::Ignore,
            _ => Target::Attribute(column.trim().to_owned()),
        }
    }
}

/// Options checked against the database: lists resolved, the basis parsed, the manifest found.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) columns: BTreeMap<String, Target>,
    pub(super) lists: Vec<ListId>,
    pub(super) tags: Vec<Tag>,
    pub(super) basis: Option<ConsentBasis>,
    pub(super) evidence: Evidence,
    /// Every list, by id and by name, for `lists` columns.
    pub(super) known_lists: HashMap<String, ListId>,
    /// Who the consent events name: the job's creator.
    pub(super) actor: String,
}

/// Checks options; answers the plan or every fault, each named.
pub(super) async fn plan(db: &Db, options: &ImportOptions) -> Result<Plan> {
    plan_given(db, options, None).await
}

/// [`plan`], for options naming `given`, a manifest not stored yet (it is stored with the
/// job, in one transaction).
pub(super) async fn plan_given(db: &Db, options: &ImportOptions, given: Option<&ManifestRow>) -> Result<Plan> {
    let mut errors = Vec::new();
    let mut columns = BTreeMap::new();
    for (column, target) in &options.columns {
        match Target::parse(target) {
            Some(target) => {
                columns.insert(column.clone(), target);
            }
            None => errors.push(FieldError::new(
                format!("columns.{column}"),
                "must be email, company, country, tags, lists, attributes, attributes.<name>, status, suppressed or ignore",
            )),
        }
    }
    if let Some(delimiter) = options.delimiter
        && (!delimiter.is_ascii() || delimiter.is_ascii_alphanumeric() || delimiter == '"')
    {
        errors.push(FieldError::new("delimiter", "must be one ASCII punctuation or whitespace character"));
    }
    if let Some(encoding) = &options.encoding
        && encoding_rs::Encoding::for_label(encoding.as_bytes()).is_none()
    {
        errors.push(FieldError::new("encoding", "is not an encoding name (utf-8, windows-1252, iso-8859-1…)"));
    }
    let tags: Vec<Tag> = options
        .tags
        .iter()
        .enumerate()
        .filter_map(|(index, tag)| {
            Tag::parse(tag).map_err(|e| errors.push(FieldError::new(format!("tags[{index}]"), e))).ok()
        })
        .collect();
    let basis = match &options.basis {
        Some(basis) => match basis.parse::<ConsentBasis>() {
            Ok(basis) => Some(basis),
            Err(e) => {
                errors.push(FieldError::new("basis", e));
                None
            }
        },
        None => None,
    };
    let known_lists = db
        .read(|conn| {
            Ok(storage::lists::list_lists(conn, None, i64::MAX)?
                .into_iter()
                .flat_map(|list| [(list.id.to_string(), list.id), (list.name.clone(), list.id)])
                .collect::<HashMap<String, ListId>>())
        })
        .await?;
    let mut lists = Vec::new();
    for (index, list) in options.lists.iter().enumerate() {
        match known_lists.get(list) {
            Some(id) => lists.push(*id),
            None => errors.push(FieldError::new(format!("lists[{index}]"), format!("there is no list {list}"))),
        }
    }
    let manifest = match &options.manifest_id {
        Some(id) if given.is_some_and(|m| m.id == *id) => given.cloned(),
        Some(id) => {
            let id = id.clone();
            let found = db.read(move |conn| Ok(repo::find_manifest(conn, &id)?)).await?;
            if found.is_none() {
                errors.push(FieldError::new("manifest_id", "there is no such manifest"));
            }
            found
        }
        None => None,
    };
    match basis {
        Some(ConsentBasis::Imported) if manifest.is_none() && options.manifest_id.is_none() => errors.push(
            FieldError::new("manifest_id", "a list imported on the `imported` basis needs its provenance manifest"),
        ),
        Some(_) if manifest.is_none() && options.consent_text.as_deref().is_none_or(|t| t.trim().is_empty()) => {
            errors.push(FieldError::new("consent_text", "must hold what the people agreed to (or give a manifest)"))
        }
        Some(_) if lists.is_empty() && !columns.values().any(|t| *t == Target::Lists) => {
            errors.push(FieldError::new("lists", "name the lists the consent is for"))
        }
        None if manifest.is_some() => errors.push(FieldError::new("basis", "a manifest goes with a basis")),
        _ => {}
    }
    if !errors.is_empty() {
        return Err(Error::Validation(errors));
    }
    let evidence = Evidence {
        method: "import".to_owned(),
        consent_text: manifest.as_ref().map(|m| m.consent_text.clone()).or_else(|| options.consent_text.clone()),
        manifest_id: manifest.map(|m| m.id),
        ..Evidence::default()
    };
    Ok(Plan { columns, lists, tags, basis, evidence, known_lists, actor: String::new() })
}
