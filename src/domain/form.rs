//! Signup forms: their definition (what a person sees) and the checking of a submission
//! against it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::brand::Color;
use super::consent::ConsentBasis;
use super::email::EmailFault;
use super::{BrandId, Country, Email, ListId, PartnerId, SurveyId};
use crate::error::FieldError;

/// The languages built-in page and mail strings exist in (`src/i18n`), English first.
pub const LOCALES: [&str; 8] = ["en", "fr", "de", "it", "es", "pt", "nl", "pl"];

/// The hidden field bots fill in and people do not see.
pub const HONEYPOT_FIELD: &str = "website";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormOptIn {
    /// Unticked boxes; the person confirms by a link mailed to them.
    Double,
    /// Unticked boxes; submitting is the consent.
    Single,
    /// Pre-ticked boxes: recorded as `passive_opt_in`, which is not valid consent for EU
    /// consumers (CJEU Planet49).
    Passive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldKind {
    Text,
    Number,
    Date,
    Select,
    MultiSelect,
    Checkbox,
    Country,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormField {
    pub name: String,
    pub label: String,
    pub kind: FieldKind,
    pub required: bool,
    pub options: Vec<String>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<u32>,
}

/// One consent checkbox: a list and the exact words shown beside the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentCheckbox {
    pub list_id: ListId,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormDefinition {
    pub name: String,
    pub locale: Option<String>,
    pub title: String,
    pub intro: String,
    pub fields: Vec<FormField>,
    pub consents: Vec<ConsentCheckbox>,
    pub opt_in: FormOptIn,
    /// Business-to-business: a company field, and professional or role addresses
    /// recorded as such.
    pub b2b: bool,
    pub thank_you_text: String,
    pub redirect_url: Option<String>,
    pub allowed_origins: Vec<String>,
    /// Subject and text of the confirmation mail; `None` for the built-in ones.
    pub confirmation_subject: Option<String>,
    pub confirmation_text: Option<String>,
    /// Co-registration partners, each with its own unticked box.
    #[serde(default)]
    pub partners: Vec<PartnerId>,
    /// The survey offered once the person signed up or confirmed.
    #[serde(default)]
    pub survey: Option<FormSurvey>,
    /// Who is asking; `None`: the default brand.
    #[serde(default)]
    pub brand_id: Option<BrandId>,
    /// How the form looks, chosen without writing HTML.
    #[serde(default)]
    pub look: FormLook,
}

/// The typeface of a form, from the fonts every system has (no font is downloaded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormFont {
    #[default]
    System,
    Serif,
    Rounded,
    Monospace,
}

impl FormFont {
    /// The CSS font stack.
    pub fn stack(self) -> &'static str {
        match self {
            Self::System => "system-ui, -apple-system, \"Segoe UI\", Roboto, sans-serif",
            Self::Serif => "Georgia, \"Times New Roman\", serif",
            Self::Rounded => "ui-rounded, \"SF Pro Rounded\", \"Nunito\", system-ui, sans-serif",
            Self::Monospace => "ui-monospace, \"SFMono-Regular\", Menlo, Consolas, monospace",
        }
    }
}

/// How the fields sit: one under the other, or two side by side where the width allows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormLayout {
    #[default]
    Stacked,
    TwoColumns,
}

/// A form's look. Colours left unset come from the brand, then from the built-in theme.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormLook {
    #[serde(default)]
    pub accent_color: Option<Color>,
    #[serde(default)]
    pub background_color: Option<Color>,
    #[serde(default)]
    pub text_color: Option<Color>,
    #[serde(default)]
    pub font: FormFont,
    /// The submit button's words; `None`: the built-in "Subscribe" in the page's language.
    #[serde(default)]
    pub button_label: Option<String>,
    #[serde(default)]
    pub layout: FormLayout,
    /// CSS applied to the form only (nested under the form's own element).
    #[serde(default)]
    pub custom_css: Option<String>,
}

/// The largest custom stylesheet accepted.
pub const CUSTOM_CSS_MAX: usize = 20_000;

/// Checks custom CSS. It is placed in a `<style>` element of the page and of the embed,
/// nested under the form's own element, so it may not close that element (`<`), nor leave
/// the nesting (a `}` before its `{`), nor load anything (`@import`, `url()`,
/// `image-set()`: the pages' policy would block it, a host page's might not), nor use
/// escapes, with which any of these could be spelt otherwise. Comments and strings are
/// skipped as CSS reads them.
pub fn check_custom_css(css: &str) -> Result<(), &'static str> {
    if css.len() > CUSTOM_CSS_MAX {
        return Err("must be at most 20000 bytes");
    }
    if css.contains('<') {
        return Err("may not contain '<'");
    }
    if css.contains('\\') {
        return Err("may not contain escapes ('\\')");
    }
    let mut code = String::with_capacity(css.len());
    let mut depth = 0usize;
    let mut chars = css.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                loop {
                    match chars.next() {
                        Some('/') if last == '*' => break,
                        Some(next) => last = next,
                        None => return Err("has a comment that does not end"),
                    }
                }
                code.push(' ');
            }
            '"' | '\'' => {
                loop {
                    match chars.next() {
                        Some(end) if end == c => break,
                        Some('\n') | None => return Err("has a string that does not end"),
                        Some(_) => {}
                    }
                }
                code.push_str("\"\"");
            }
            '{' => {
                depth += 1;
                code.push(c);
            }
            '}' => {
                depth = depth.checked_sub(1).ok_or("has a '}' before its '{'")?;
                code.push(c);
            }
            c => code.push(c),
        }
    }
    if depth != 0 {
        return Err("has a '{' that is not closed");
    }
    let lower = code.to_ascii_lowercase();
    if lower.contains("@import")
        || lower.contains("url(")
        || lower.contains("image-set(")
        || lower.contains("@font-face")
    {
        return Err("may not load anything: no @import, @font-face, url() or image-set()");
    }
    Ok(())
}

/// A word or phrase that alone names no purpose: a box beside it is not specific consent.
const VAGUE_TEXTS: &[&str] = &[
    "yes",
    "ok",
    "okay",
    "i agree",
    "agree",
    "i accept",
    "accept",
    "subscribe",
    "sign me up",
    "yes please",
    "oui",
    "d'accord",
    "j'accepte",
    "ja",
    "einverstanden",
    "ich stimme zu",
    "sì",
    "si",
    "accetto",
    "va bene",
];

/// Whether a consent text is too vague to be specific (GDPR Art. 4(11)): a bare "Yes" or
/// "OK", or under four words.
pub fn is_vague_consent_text(text: &str) -> bool {
    let plain: String = text
        .chars()
        .filter(|c| c.is_alphanumeric() || c.is_whitespace() || *c == '\'')
        .collect::<String>()
        .to_lowercase();
    let plain = plain.split_whitespace().collect::<Vec<_>>().join(" ");
    VAGUE_TEXTS.contains(&plain.as_str()) || plain.split(' ').filter(|w| !w.is_empty()).count() < 4
}

/// When a form offers its survey.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurveyMoment {
    /// On the page that follows the signup.
    Signup,
    /// On the page that follows the confirmation of a double opt-in.
    Confirmation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormSurvey {
    pub survey_id: SurveyId,
    pub after: SurveyMoment,
}

/// Names a custom field may not take: the form's own inputs.
const RESERVED_NAMES: &[&str] =
    &["email", "company", "consent", "consents", "partner", "partners", HONEYPOT_FIELD, "source_url", "fields"];

impl FormDefinition {
    /// Every fault of a definition, each named by its path.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut push = |field: String, message: &str| errors.push(FieldError::new(field, message));
        if self.name.trim().is_empty() {
            push("name".into(), "must not be empty");
        }
        if let Some(locale) = &self.locale
            && !LOCALES.contains(&locale.as_str())
        {
            push("locale".into(), &format!("must be one of {}", LOCALES.join(", ")));
        }
        let mut seen = Vec::new();
        for (i, field) in self.fields.iter().enumerate() {
            let valid_name = !field.name.is_empty()
                && field.name.len() <= 64
                && field.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid_name {
                push(format!("fields[{i}].name"), "must be 1 to 64 characters of a-z, 0-9 and _");
            } else if RESERVED_NAMES.contains(&field.name.as_str()) {
                push(format!("fields[{i}].name"), "is reserved for the form's own inputs");
            } else if seen.contains(&field.name) {
                push(format!("fields[{i}].name"), "is used by another field");
            }
            seen.push(field.name.clone());
            if field.label.trim().is_empty() {
                push(format!("fields[{i}].label"), "must not be empty");
            }
            let needs_options = matches!(field.kind, FieldKind::Select | FieldKind::MultiSelect);
            if needs_options && field.options.is_empty() {
                push(format!("fields[{i}].options"), "must list the choices of a select");
            }
        }
        if self.consents.is_empty() {
            push("consents".into(), "must hold at least one list with its consent text");
        }
        let mut lists = Vec::new();
        for (i, consent) in self.consents.iter().enumerate() {
            if consent.text.trim().is_empty() {
                push(format!("consents[{i}].text"), "must be the exact words shown beside the box");
            }
            if lists.contains(&consent.list_id) {
                push(format!("consents[{i}].list_id"), "is offered twice");
            }
            lists.push(consent.list_id);
        }
        let mut partners = Vec::new();
        for (i, partner) in self.partners.iter().enumerate() {
            if partners.contains(partner) {
                push(format!("partners[{i}]"), "is offered twice");
            }
            partners.push(*partner);
        }
        if let Some(css) = &self.look.custom_css
            && let Err(message) = check_custom_css(css)
        {
            push("look.custom_css".into(), message);
        }
        if let Some(label) = &self.look.button_label
            && (label.trim().is_empty() || label.chars().count() > 60 || label.chars().any(char::is_control))
        {
            push("look.button_label".into(), "must be 1 to 60 characters on one line");
        }
        if let Some(url) = &self.redirect_url
            && !is_http_url(url)
        {
            push("redirect_url".into(), "must be an http:// or https:// URL");
        }
        for (i, origin) in self.allowed_origins.iter().enumerate() {
            if !is_origin(origin) {
                push(format!("allowed_origins[{i}]"), "must be an origin such as https://www.example.org");
            }
        }
        errors
    }

    /// What an admin should know before people meet this form: it saves, but these would
    /// make its consent weak or its page unclear. Each is named by its path.
    pub fn warnings(&self, brand: Option<&super::brand::Brand>) -> Vec<FieldError> {
        let mut warnings = Vec::new();
        let has_brand = brand.is_some();
        let accent = self.look.accent_color.clone().or_else(|| brand.and_then(|b| b.profile.accent_color.clone()));
        let background =
            self.look.background_color.clone().or_else(|| brand.and_then(|b| b.profile.background_color.clone()));
        if let Some(background) = &background {
            // The page's words are dark unless the look chooses their colour.
            let text = self
                .look
                .text_color
                .clone()
                .or_else(|| super::brand::Color::parse(super::brand::TEXT_ON_CHOSEN_BACKGROUND).ok());
            if text.is_some_and(|text| super::brand::contrast(&text, background) < 4.5) {
                warnings.push(FieldError::new(
                    "look.text_color",
                    "reads poorly on the background (contrast under 4.5:1, WCAG AA): choose a darker or lighter one",
                ));
            }
            if let Some(accent) = &accent
                && super::brand::contrast(accent, background) < 3.0
            {
                warnings.push(FieldError::new(
                    "look.accent_color",
                    "hardly stands out from the background (contrast under 3:1): buttons and links are hard to see",
                ));
            }
        }
        if self.opt_in == FormOptIn::Passive && !self.b2b {
            warnings.push(FieldError::new(
                "opt_in",
                "pre-ticked boxes are not valid consent for consumers in the EU (CJEU Planet49): signups are \
                 recorded as passive_opt_in and the built-in send policy does not mail them",
            ));
        }
        for (i, consent) in self.consents.iter().enumerate() {
            if is_vague_consent_text(&consent.text) {
                warnings.push(FieldError::new(
                    format!("consents[{i}].text"),
                    "is too vague to be specific consent: say what the person will receive, such as \
                     \"Send me the monthly newsletter\"",
                ));
            }
        }
        if !has_brand {
            warnings.push(FieldError::new(
                "brand_id",
                "no brand is set up: the page does not say who is asking nor link a privacy policy \
                 (create one with POST /api/v1/brands)",
            ));
        }
        warnings
    }

    /// The legal basis of a grant through this form, for this address.
    pub fn basis_for(&self, email: &Email) -> ConsentBasis {
        if self.b2b {
            if email.is_role_address() { ConsentBasis::B2bRoleAddress } else { ConsentBasis::B2bProfessional }
        } else if self.opt_in == FormOptIn::Passive {
            ConsentBasis::PassiveOptIn
        } else {
            ConsentBasis::SingleOptIn
        }
    }
}

fn is_http_url(url: &str) -> bool {
    let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
    rest.is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !url.chars().any(char::is_whitespace))
}

/// An origin as `scheme://host[:port]`: a host of letters, digits, `-` and `.`, and a
/// port of digits; nothing else (no `*`, `;` or quote could reach a header built from it).
fn is_origin(origin: &str) -> bool {
    let origin = origin.trim_end_matches('/');
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else {
        return false;
    };
    let (host, port) = rest.split_once(':').unwrap_or((rest, ""));
    let host_ok = !host.is_empty()
        && !host.starts_with(['-', '.'])
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    let port_ok = port.is_empty() || (port.len() <= 5 && port.chars().all(|c| c.is_ascii_digit()));
    host_ok && port_ok && (port.is_empty() != rest.contains(':'))
}

/// A submission as received: every value as text, keyed by input name (several values
/// for multi-selects and the consent boxes).
#[derive(Debug, Clone, Default)]
pub struct RawSubmission {
    pub values: BTreeMap<String, Vec<String>>,
}

impl RawSubmission {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.values.get(name).and_then(|v| v.first()).map(String::as_str)
    }

    pub fn all(&self, name: &str) -> &[String] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }

    pub fn is_honeypot_filled(&self) -> bool {
        self.first(HONEYPOT_FIELD).is_some_and(|v| !v.trim().is_empty())
    }
}

/// Why a submitted value is refused: a value the page puts in the person's language.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    Required,
    MustBeTicked,
    Email(EmailFault),
    TooLong(usize),
    ControlCharacters,
    OneValue,
    NotANumber,
    OutOfRange { min: Option<f64>, max: Option<f64> },
    NotADate,
    NotAnOption { options: Vec<String> },
    NotOneOf { value: String, options: Vec<String> },
    NotTickable,
    NotACountry,
    NotAList(String),
    NoConsent,
    PartnerGone(String),
    NotAPartner(String),
}

impl Fault {
    /// The key of its words among the built-in strings (`src/i18n`).
    pub fn key(&self) -> &'static str {
        match self {
            Self::Required => "fault_required",
            Self::MustBeTicked => "fault_must_be_ticked",
            Self::Email(EmailFault::Empty) => "fault_required",
            Self::Email(EmailFault::TooLong) => "fault_email_too_long",
            Self::Email(EmailFault::Spaces) => "fault_email_spaces",
            Self::Email(EmailFault::NoAt) => "fault_email_no_at",
            Self::Email(EmailFault::LocalPart) => "fault_email_local_part",
            Self::Email(EmailFault::Domain) => "fault_email_domain",
            Self::Email(EmailFault::Malformed) => "fault_email_malformed",
            Self::TooLong(_) => "fault_too_long",
            Self::ControlCharacters => "fault_control_characters",
            Self::OneValue => "fault_one_value",
            Self::NotANumber => "fault_not_a_number",
            Self::OutOfRange { min: Some(_), max: Some(_) } => "fault_between",
            Self::OutOfRange { min: Some(_), max: None } => "fault_at_least",
            Self::OutOfRange { .. } => "fault_at_most",
            Self::NotADate => "fault_not_a_date",
            Self::NotAnOption { .. } => "fault_not_an_option",
            Self::NotOneOf { .. } => "fault_not_one_of",
            Self::NotTickable => "fault_not_tickable",
            Self::NotACountry => "fault_not_a_country",
            Self::NotAList(_) => "fault_not_a_list",
            Self::NoConsent => "fault_no_consent",
            Self::PartnerGone(_) => "fault_partner_gone",
            Self::NotAPartner(_) => "fault_not_a_partner",
        }
    }

    /// The values its words name, by placeholder.
    pub fn arguments(&self) -> Vec<(&'static str, String)> {
        let number = |n: f64| n.to_string();
        match self {
            Self::TooLong(max) => vec![("max", max.to_string())],
            Self::OutOfRange { min, max } => {
                [min.map(|m| ("min", number(m))), max.map(|m| ("max", number(m)))].into_iter().flatten().collect()
            }
            Self::NotAnOption { options } => vec![("options", options.join(", "))],
            Self::NotOneOf { value, options } => vec![("value", value.clone()), ("options", options.join(", "))],
            Self::NotAList(value) | Self::PartnerGone(value) | Self::NotAPartner(value) => {
                vec![("value", value.clone())]
            }
            _ => Vec::new(),
        }
    }
}

/// A fault and the input it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionFault {
    pub field: String,
    pub fault: Fault,
}

impl SubmissionFault {
    fn new(field: impl Into<String>, fault: Fault) -> Self {
        Self { field: field.into(), fault }
    }
}

/// A single-line text of at most `max` characters.
fn check_text(value: &str, max: usize) -> Result<String, Fault> {
    if value.chars().count() > max {
        Err(Fault::TooLong(max))
    } else if value.chars().any(char::is_control) {
        Err(Fault::ControlCharacters)
    } else {
        Ok(value.to_owned())
    }
}

/// A submission that matches its form.
#[derive(Debug, Clone)]
pub struct ValidSubmission {
    pub email: Email,
    pub company: Option<String>,
    /// From a field of type `country`: the contact's own country, which the send policy
    /// and segments read (not an attribute).
    pub country: Option<Country>,
    pub attributes: Map<String, Value>,
    /// The lists whose box was ticked, with the text shown.
    pub consents: Vec<ConsentCheckbox>,
    /// The partners whose box was ticked.
    pub partners: Vec<PartnerId>,
}

/// Checks a submission against the form, whose partners offered now (the active ones, the
/// only ones the page shows) are `offered_partners`; on failure, every fault by input name.
pub fn check_submission(
    form: &FormDefinition,
    offered_partners: &[PartnerId],
    raw: &RawSubmission,
) -> Result<ValidSubmission, Vec<SubmissionFault>> {
    let mut errors = Vec::new();
    let email = match raw.first("email").map(str::trim).filter(|e| !e.is_empty()) {
        None => {
            errors.push(SubmissionFault::new("email", Fault::Required));
            None
        }
        Some(email) => {
            Email::check(email).map_err(|e| errors.push(SubmissionFault::new("email", Fault::Email(e)))).ok()
        }
    };
    let company = match raw.first("company").map(str::trim).filter(|c| !c.is_empty()) {
        None if form.b2b => {
            errors.push(SubmissionFault::new("company", Fault::Required));
            None
        }
        None => None,
        Some(company) => check_text(company, 200).map_err(|e| errors.push(SubmissionFault::new("company", e))).ok(),
    };
    let mut attributes = Map::new();
    let mut country = None;
    for field in &form.fields {
        let values: Vec<&str> = raw.all(&field.name).iter().map(|v| v.trim()).filter(|v| !v.is_empty()).collect();
        if values.is_empty() {
            if field.required && field.kind != FieldKind::Checkbox {
                errors.push(SubmissionFault::new(&field.name, Fault::Required));
            } else if field.required {
                errors.push(SubmissionFault::new(&field.name, Fault::MustBeTicked));
            } else if field.kind == FieldKind::Checkbox {
                attributes.insert(field.name.clone(), Value::Bool(false));
            }
            continue;
        }
        match check_value(field, &values) {
            Ok(Value::String(code)) if field.kind == FieldKind::Country && country.is_none() => {
                country = Country::parse(&code).ok();
            }
            Ok(value) => {
                attributes.insert(field.name.clone(), value);
            }
            Err(fault) => errors.push(SubmissionFault::new(&field.name, fault)),
        }
    }
    let ticked = raw.all("consent");
    let consents: Vec<ConsentCheckbox> =
        form.consents.iter().filter(|c| ticked.iter().any(|t| t.trim() == c.list_id.to_string())).cloned().collect();
    for value in ticked {
        if !form.consents.iter().any(|c| c.list_id.to_string() == value.trim()) {
            errors.push(SubmissionFault::new("consent", Fault::NotAList(value.clone())));
        }
    }
    if consents.is_empty() && errors.iter().all(|e| e.field != "consent") {
        errors.push(SubmissionFault::new("consent", Fault::NoConsent));
    }
    let mut partners = Vec::new();
    for value in raw.all("partner") {
        match form.partners.iter().find(|p| p.to_string() == value.trim()) {
            Some(partner) if !offered_partners.contains(partner) => {
                errors.push(SubmissionFault::new("partner", Fault::PartnerGone(value.clone())));
            }
            Some(partner) if !partners.contains(partner) => partners.push(*partner),
            Some(_) => {}
            None => errors.push(SubmissionFault::new("partner", Fault::NotAPartner(value.clone()))),
        }
    }
    match email {
        Some(email) if errors.is_empty() => {
            Ok(ValidSubmission { email, company, country, attributes, consents, partners })
        }
        _ => Err(errors),
    }
}

fn check_value(field: &FormField, values: &[&str]) -> Result<Value, Fault> {
    if field.kind != FieldKind::MultiSelect && values.len() > 1 {
        return Err(Fault::OneValue);
    }
    let value = values[0];
    match field.kind {
        FieldKind::Text => {
            let max = field.max_length.unwrap_or(1000) as usize;
            check_text(value, max).map(Value::String)
        }
        FieldKind::Number => {
            let number: f64 = value.parse().map_err(|_| Fault::NotANumber)?;
            if !number.is_finite() {
                return Err(Fault::NotANumber);
            }
            if field.min.is_some_and(|min| number < min) || field.max.is_some_and(|max| number > max) {
                return Err(Fault::OutOfRange { min: field.min, max: field.max });
            }
            Ok(serde_json::Number::from_f64(number).map_or(Value::Null, Value::Number))
        }
        FieldKind::Date => chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map(|d| Value::String(d.to_string()))
            .map_err(|_| Fault::NotADate),
        FieldKind::Select => {
            if field.options.iter().any(|o| o == value) {
                Ok(Value::String(value.to_owned()))
            } else {
                Err(Fault::NotAnOption { options: field.options.clone() })
            }
        }
        FieldKind::MultiSelect => {
            let mut chosen = Vec::new();
            for value in values {
                if !field.options.iter().any(|o| o == value) {
                    return Err(Fault::NotOneOf { value: (*value).to_owned(), options: field.options.clone() });
                }
                chosen.push(Value::String((*value).to_owned()));
            }
            Ok(Value::Array(chosen))
        }
        FieldKind::Checkbox => match value {
            "on" | "true" | "1" | "yes" => Ok(Value::Bool(true)),
            "off" | "false" | "0" | "no" => Ok(Value::Bool(false)),
            _ => Err(Fault::NotTickable),
        },
        FieldKind::Country => {
            Country::parse(value).map(|c| Value::String(c.as_str().to_owned())).map_err(|_| Fault::NotACountry)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_css_stays_inside_the_form_and_loads_nothing() {
        assert!(
            check_custom_css("h1 { letter-spacing: .05em; } @media (min-width: 30rem) { p { margin: 0 } }").is_ok()
        );
        assert!(check_custom_css("p::before { content: '}'; } /* } */").is_ok(), "braces in strings and comments");
        for escaping in [
            "} .imprint, .sender { display: none } .x {",
            "</style><script>alert(1)</script>",
            "a { background: url(https://t.example/x) }",
            "a { background: \\75rl(https://t.example/x) }",
            "@\\69mport 'x.css';",
            "@import 'x.css';",
            "a { color: red",
            "a { content: 'open }",
            "/* never closed",
        ] {
            assert!(check_custom_css(escaping).is_err(), "{escaping}");
        }
    }

    #[test]
    fn an_allowed_origin_is_a_scheme_a_host_and_a_port_only() {
        for good in ["https://shop.example", "http://localhost:8080", "https://www.example.org/"] {
            assert!(is_origin(good), "{good}");
        }
        for bad in [
            "https://*",
            "https://*.com",
            "https://a.example;script-src *",
            "https://a.example/path",
            "https://a.example:",
            "https://'self'",
            "ftp://a.example",
            "https://a.example:99999x",
        ] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
