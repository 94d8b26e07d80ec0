//! Domain types and pure rules: no I/O, no framework types.

pub mod brand;
pub mod campaign;
pub mod consent;
pub mod contact;
pub mod country;
pub mod email;
pub mod evidence;
pub mod form;
pub mod ids;
pub mod import;
pub mod ledger;
pub mod list;
pub mod partner;
pub mod role;
pub mod segment;
pub mod survey;
pub mod user;

pub use campaign::{CampaignCommand, CampaignKind, CampaignPurpose, CampaignStatus, RecipientStatus};
pub use contact::{Contact, ContactStatus, Tag};
pub use country::Country;
pub use email::Email;
pub use ids::{
    ApiKeyId, BrandId, CampaignId, ConfirmationId, ContactId, DeliveryId, FormId, LeadId, ListId, PartnerId, SegmentId,
    SurveyId, UserId, WebhookId,
};
pub use import::ImportStatus;
pub use list::{List, ListName, OptInMode};
pub use role::Role;
pub use user::{ApiKey, User};

/// Why a value could not be parsed; the caller knows which field it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
