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
