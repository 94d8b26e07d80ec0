//! The value sets the document lists for fields the server checks itself (with its own
//! messages): schema-only enums, so that a client or a fuzzer knows every value accepted.

use utoipa::ToSchema;

/// What a user or API key may do: `admin`, `editor` or `viewer`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RoleName {
    Admin,
    Editor,
    Viewer,
}

/// A form's opt-in: `double` (the default), `single`, or `passive` (pre-ticked boxes,
/// recorded as `passive_opt_in`, which is not valid consent for EU consumers).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FormOptInName {
    Double,
    Single,
    Passive,
}

/// A list's opt-in.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ListOptInName {
    Double,
    Single,
}

/// A file's format: `csv` or `ndjson`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum FileFormatName {
    Csv,
    Ndjson,
}

/// What a partner's lead becomes: `accept` (recorded at once on the `partner` basis with
/// the proof) or `reconfirm` (counted once the person confirms a double opt-in mail; the
/// default).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum InboundPolicyName {
    Accept,
    Reconfirm,
}

/// A purpose: `list:<list id>` or `partner:<partner id>`.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^(list:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|partner:.{1,64})$")]
#[allow(dead_code)]
pub struct PurposeText(String);

/// Text that is not only blank (a file's contents).
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "\\S")]
#[allow(dead_code)]
pub struct NonBlankText(String);

/// A partner's status: `active` (the default) or `inactive` (not shown on forms).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum PartnerStatusName {
    Active,
    Inactive,
}

/// Which way a lead went.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DirectionName {
    Outbound,
    Inbound,
}

/// A contact's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ContactStatusName {
    Active,
    Unsubscribed,
    Bounced,
    Complained,
}

/// A campaign recipient's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RecipientStatusName {
    Pending,
    Sent,
    Failed,
    Excluded,
    Cancelled,
}

/// A webhook delivery's status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DeliveryStatusName {
    Pending,
    Delivered,
    Dead,
    Pull,
}

/// Whom a campaign addresses: consumers (`b2c`, the default) or businesses (`b2b`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CampaignKindName {
    B2c,
    B2b,
}

/// Why a campaign is sent: `marketing` (the default), `similar_products` (what a soft
/// opt-in allows) or `re_permission` (asking imported contacts to opt in).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CampaignPurposeName {
    Marketing,
    SimilarProducts,
    RePermission,
}

/// A basis an integrator collected on its own channel: `single_opt_in`, `soft_opt_in`,
/// `b2b_professional`, `b2b_role_address` or `passive_opt_in` (kept for the record; not
/// consent for EU consumers). Never `double_opt_in` (start a confirmation instead),
/// `partner` or `imported`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum RecordableBasisName {
    SingleOptIn,
    SoftOptIn,
    B2bProfessional,
    B2bRoleAddress,
    PassiveOptIn,
}

/// An event a webhook subscribes to.
#[derive(ToSchema)]
#[allow(dead_code)]
pub enum SubscribableEventName {
    #[schema(rename = "contact.created")]
    ContactCreated,
    #[schema(rename = "contact.updated")]
    ContactUpdated,
    #[schema(rename = "contact.deleted")]
    ContactDeleted,
    #[schema(rename = "consent.granted")]
    ConsentGranted,
    #[schema(rename = "consent.confirmed")]
    ConsentConfirmed,
    #[schema(rename = "consent.withdrawn")]
    ConsentWithdrawn,
    #[schema(rename = "form.submitted")]
    FormSubmitted,
    #[schema(rename = "campaign.sent")]
    CampaignSent,
    #[schema(rename = "survey.completed")]
    SurveyCompleted,
    #[schema(rename = "consent.checkpoint")]
    ConsentCheckpoint,
}

/// A name or a line of text: not blank, and without control characters.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*[^\\s\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*$")]
#[allow(dead_code)]
pub struct LineText(String);

/// A tag: 1 to 64 letters, digits, `-`, `_`, `:` or `.` (spaces around it are trimmed).
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^\\s*[\\w:.-]{1,64}\\s*$")]
#[allow(dead_code)]
pub struct TagText(String);

/// An e-mail address: `local@domain`, the domain a host name with a dot.
#[derive(ToSchema)]
#[schema(
    value_type = String,
    pattern = "^\\s*(?=[^@]{1,64}@)[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+\\s*$",
    example = "marie.curie@example.org"
)]
#[allow(dead_code)]
pub struct EmailText(String);

/// An `http://` or `https://` URL.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^https?://[^\\s/?#]+[^\\s]*$", example = "https://example.org/hook")]
#[allow(dead_code)]
pub struct HttpUrl(String);

/// A privacy policy's address: https, or http on the local machine (to try things out).
#[derive(ToSchema)]
#[schema(
    value_type = String,
    pattern = "^(https://[^\\s/?#]+|http://(localhost|127\\.0\\.0\\.1)([:/][^\\s]*)?$)[^\\s]*$",
    example = "https://example.org/privacy"
)]
#[allow(dead_code)]
pub struct PolicyUrl(String);

/// A hook's name: a Rhai function name.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[A-Za-z_][A-Za-z0-9_]*$", example = "eligible")]
#[allow(dead_code)]
pub struct HookName(String);

/// Free text on one line, possibly empty: no control characters.
#[derive(ToSchema)]
#[schema(value_type = String, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
#[allow(dead_code)]
pub struct ShortText(String);
