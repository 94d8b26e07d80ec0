//! Mailing lists: a list is a purpose people consent to.

use std::fmt;
use std::str::FromStr;

use super::Invalid;

/// How people join a list through a form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptInMode {
    /// The person confirms by a link in a confirmation e-mail (the default, and the
    /// only mode that proves the address belongs to the person who signed up).
    #[default]
    Double,
    /// The submitted form is the consent.
    Single,
}

impl OptInMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OptInMode::Double => "double",
            OptInMode::Single => "single",
        }
    }
}

impl fmt::Display for OptInMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OptInMode {
    type Err = Invalid;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "double" => Ok(OptInMode::Double),
            "single" => Ok(OptInMode::Single),
            _ => Err(Invalid::new("must be double or single")),
        }
    }
}

/// A list's name: 1 to 200 characters, trimmed, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListName(String);

impl ListName {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        let name = input.trim();
        if name.is_empty() {
            return Err(Invalid::new("must not be empty"));
        }
        if name.chars().count() > 200 {
            return Err(Invalid::new("must be at most 200 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Invalid::new("must not contain control characters"));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

/// A list as the services see it.
#[derive(Debug, Clone)]
pub struct List {
    pub id: super::ListId,
    pub name: String,
    pub description: String,
    pub opt_in: OptInMode,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}
