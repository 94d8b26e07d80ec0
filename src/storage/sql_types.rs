//! Domain values stored as text: typed ids and states go into rows and queries as they are,
//! and a row read back holds them typed.
//!
//! Each value is written as its `Display` form and read back with `FromStr`; a column that
//! does not parse holds what this code never writes, and reading it is an error diesel
//! reports like any other. The impls are here rather than on the domain types so that the
//! domain stays free of diesel.

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql};
use diesel::pg::Pg;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::Sqlite;

use super::MultiBackend;
use crate::domain;

/// Makes each type a text column's value on both backends and on the one over them.
macro_rules! stored_as_text {
    ($($ty:ty),* $(,)?) => {$(
        const _: () = {
            // diesel's own derives, aimed at the domain type through a local wrapper: they
            // make the type an expression of SQL text and a value a row can hold.
            #[derive(diesel::expression::AsExpression, diesel::deserialize::FromSqlRow)]
            #[diesel(foreign_derive, sql_type = Text)]
            #[allow(dead_code)]
            struct Stored($ty);

            impl<DB> FromSql<Text, DB> for $ty
            where
                DB: Backend,
                String: FromSql<Text, DB>,
            {
                fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
                    let text = String::from_sql(bytes)?;
                    text.parse::<$ty>().map_err(|error| {
                        format!("{text:?} is not a stored {}: {error}", stringify!($ty)).into()
                    })
                }
            }

            impl ToSql<Text, Sqlite> for $ty {
                fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                    out.set_value(self.to_string());
                    Ok(IsNull::No)
                }
            }

            impl ToSql<Text, Pg> for $ty {
                fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                    use std::io::Write;
                    write!(out, "{self}")?;
                    Ok(IsNull::No)
                }
            }

            impl ToSql<Text, MultiBackend> for $ty {
                fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, MultiBackend>) -> serialize::Result {
                    out.set_value((Text, self));
                    Ok(IsNull::No)
                }
            }
        };
    )*};
}

stored_as_text!(
    domain::ContactId,
    domain::ListId,
    domain::UserId,
    domain::ApiKeyId,
    domain::FormId,
    domain::ConfirmationId,
    domain::SegmentId,
    domain::CampaignId,
    domain::PartnerId,
    domain::SurveyId,
    domain::WebhookId,
    domain::DeliveryId,
    domain::BrandId,
    domain::LeadId,
    domain::ContactStatus,
    domain::OptInMode,
    domain::Role,
    domain::CampaignKind,
    domain::CampaignPurpose,
    domain::CampaignStatus,
    domain::RecipientStatus,
    domain::ImportStatus,
    domain::consent::ConsentBasis,
    domain::consent::ConsentAction,
    domain::consent::Purpose,
    domain::partner::InboundPolicy,
    domain::partner::PartnerStatus,
    domain::partner::LeadDirection,
    domain::partner::LeadStatus,
    domain::partner::EventType,
    domain::partner::DeliveryStatus,
);
