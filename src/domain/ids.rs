//! Identifiers: UUIDs wrapped per kind so that one cannot be passed for another.
//!
//! New ids are UUID v7 (time-ordered), so ordering by id is ordering by creation, which
//! keyset pagination relies on.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

macro_rules! id_type {
    ($name:ident) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

id_type!(ContactId);
id_type!(ListId);
id_type!(UserId);
id_type!(ApiKeyId);
id_type!(FormId);
id_type!(ConfirmationId);
id_type!(SegmentId);
id_type!(CampaignId);
id_type!(PartnerId);
id_type!(SurveyId);
id_type!(WebhookId);
id_type!(DeliveryId);
id_type!(LeadId);
id_type!(BrandId);
