//! What a segment's script narrows the contacts to, where SQL can test it.

/// Conditions SQL tests, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlConditions {
    pub countries: Vec<String>,
    pub statuses: Vec<String>,
    pub tags: Vec<String>,
    pub lists: Vec<String>,
    /// A campaign's audience: on any of these lists, or with any consent event for one of
    /// them (so that those who left are seen, and excluded with their reason).
    pub audience_lists: Vec<String>,
}

impl SqlConditions {
    pub fn is_empty(&self) -> bool {
        self.countries.is_empty()
            && self.statuses.is_empty()
            && self.tags.is_empty()
            && self.lists.is_empty()
            && self.audience_lists.is_empty()
    }
}
