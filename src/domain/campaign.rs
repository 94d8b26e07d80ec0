//! What a campaign is, as the send policy sees it.

use super::consent::string_enum;

string_enum! {
    /// Whom a campaign addresses: consumers, or businesses (where the opt-out regime
    /// may apply to professional and role addresses).
    CampaignKind {
        B2c = "b2c",
        B2b = "b2b",
    }
}

string_enum! {
    /// What a campaign is for, as the send policy sees it.
    CampaignPurpose {
        /// Marketing to those who agreed.
        Marketing = "marketing",
        /// The seller's own similar products: soft opt-in counts (B2C).
        SimilarProducts = "similar_products",
        /// Asking imported contacts without valid consent to opt in.
        RePermission = "re_permission",
    }
}
