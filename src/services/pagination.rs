//! Keyset pagination.
//!
//! Every collection is ordered by id (UUID v7, so by creation). A cursor is the last id
//! of a page; the next page starts after it, so rows added or removed meanwhile never
//! shift a page.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::error::{Error, Result};

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// One page of a collection.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page { items: self.items.into_iter().map(f).collect(), next_cursor: self.next_cursor }
    }
}

/// Where a page starts and how long it is, checked.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    pub after: Option<String>,
    pub limit: u32,
}

impl PageRequest {
    pub fn parse(cursor: Option<&str>, limit: Option<u32>) -> Result<Self> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::field("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        // An empty cursor is not one: the first page is asked for without it.
        let after = match cursor {
            Some(cursor) => Some(decode(cursor)?),
            None => None,
        };
        Ok(Self { after, limit })
    }

    /// Rows to fetch: one more than the page, to know whether another page follows.
    pub fn fetch_limit(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the fetched rows to the page and sets the cursor if more follow.
    pub fn page<T>(&self, mut rows: Vec<T>, id_of: impl Fn(&T) -> String) -> Page<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next_cursor = if more { rows.last().map(|last| encode(&id_of(last))) } else { None };
        Page { items: rows, next_cursor }
    }
}

/// A cursor is the id of the last item of its page: any UUID is a place to start after,
/// so a client (or a fuzzer) holding a well-formed one always gets a page.
fn encode(id: &str) -> String {
    id.to_owned()
}

fn decode(cursor: &str) -> Result<String> {
    let invalid = || Error::field("cursor", "must be the next_cursor of a page (a UUID)");
    if let Ok(id) = uuid::Uuid::parse_str(cursor) {
        return Ok(id.to_string());
    }
    // The form of earlier versions (base64 of `v1:<id>`), for a client paging across an upgrade.
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let id = text.strip_prefix("v1:").ok_or_else(invalid)?;
    uuid::Uuid::parse_str(id).map_err(|_| invalid())?;
    Ok(id.to_owned())
}
