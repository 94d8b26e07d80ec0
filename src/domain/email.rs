//! E-mail addresses: parsing, normalisation and role-address detection.

use super::Invalid;

/// A syntactically valid e-mail address, trimmed, with its domain lower-cased.
///
/// The local part keeps its case as the person typed it (RFC 5321 lets a server treat it
/// as case-sensitive), but two addresses that differ only in case are the same contact:
/// [`Email::key`] is the fully lower-cased form used for uniqueness and search.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

/// Local parts that name a function of a company rather than a person. Mail to them is
/// company data (B2B role address), not a person's consent.
const ROLE_LOCAL_PARTS: &[&str] = &[
    "abuse",
    "accounting",
    "accounts",
    "admin",
    "administrator",
    "billing",
    "booking",
    "bookings",
    "careers",
    "contact",
    "contactus",
    "customercare",
    "customerservice",
    "enquiries",
    "enquiry",
    "events",
    "finance",
    "hello",
    "help",
    "helpdesk",
    "hostmaster",
    "hr",
    "info",
    "information",
    "inquiries",
    "inquiry",
    "invoice",
    "invoices",
    "jobs",
    "legal",
    "mail",
    "mailer-daemon",
    "marketing",
    "media",
    "no-reply",
    "noreply",
    "office",
    "orders",
    "postmaster",
    "press",
    "privacy",
    "reception",
    "recruitment",
    "root",
    "sales",
    "security",
    "service",
    "shop",
    "staff",
    "support",
    "team",
    "webmaster",
    "welcome",
];

const MAX_LENGTH: usize = 254;

/// Why a text is not an e-mail address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailFault {
    Empty,
    TooLong,
    Spaces,
    NoAt,
    LocalPart,
    Domain,
    Malformed,
}

impl EmailFault {
    /// What is wrong, in English, for the API.
    pub fn message(self) -> String {
        match self {
            Self::Empty => "must not be empty".to_owned(),
            Self::TooLong => format!("must be at most {MAX_LENGTH} characters"),
            Self::Spaces => "must not contain spaces or control characters".to_owned(),
            Self::NoAt => "must contain an @".to_owned(),
            Self::LocalPart => "the part before @ must be 1 to 64 characters".to_owned(),
            Self::Domain => "the domain after @ is not a valid host name".to_owned(),
            Self::Malformed => "is not a valid e-mail address".to_owned(),
        }
    }
}

impl Email {
    pub fn parse(input: &str) -> Result<Self, Invalid> {
        Self::check(input).map_err(|fault| Invalid::new(fault.message()))
    }

    /// Parses an address, saying what is wrong as a value the caller may put in words.
    pub fn check(input: &str) -> Result<Self, EmailFault> {
        let trimmed = input.trim();
        if trimmed.is_empty() {
            return Err(EmailFault::Empty);
        }
        if trimmed.len() > MAX_LENGTH {
            return Err(EmailFault::TooLong);
        }
        if trimmed.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailFault::Spaces);
        }
        let Some((local, domain)) = trimmed.rsplit_once('@') else {
            return Err(EmailFault::NoAt);
        };
        if local.is_empty() || local.len() > 64 {
            return Err(EmailFault::LocalPart);
        }
        let domain = domain.to_lowercase();
        if !is_valid_domain(&domain) {
            return Err(EmailFault::Domain);
        }
        let normalised = format!("{local}@{domain}");
        if !email_address::EmailAddress::is_valid(&normalised) {
            return Err(EmailFault::Malformed);
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased form: one contact per key.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }

    pub fn local_part(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(local, _)| local)
    }

    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map_or("", |(_, domain)| domain)
    }

    /// Whether the address names a function (info@, sales@…) rather than a person.
    /// Sub-addressing is ignored: `info+shop@` is still `info@`.
    pub fn is_role_address(&self) -> bool {
        let local = self.local_part().to_lowercase();
        let base = local.split('+').next().unwrap_or(&local);
        ROLE_LOCAL_PARTS.contains(&base)
    }

    /// Re-wraps a value read back from storage, where it was stored already parsed.
    pub fn from_trusted(stored: String) -> Self {
        Self(stored)
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A DNS host name with at least two labels (no bare host names, no IP literals).
fn is_valid_domain(domain: &str) -> bool {
    if domain.len() > 253 || !domain.contains('.') {
        return false;
    }
    domain.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_alphanumeric() || c == '-')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lowercases_the_domain_only() {
        let email = Email::parse("  Jane.Doe@Example.COM ").unwrap();
        assert_eq!(email.as_str(), "Jane.Doe@example.com");
        assert_eq!(email.key(), "jane.doe@example.com");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in ["", "plain", "@example.com", "a@", "a@localhost", "a b@example.com", "a@-x.com", "a@x..com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn detects_role_addresses() {
        assert!(Email::parse("info@acme.fr").unwrap().is_role_address());
        assert!(Email::parse("Sales+eu@acme.fr").unwrap().is_role_address());
        assert!(!Email::parse("marie.curie@acme.fr").unwrap().is_role_address());
    }

    proptest::proptest! {
        /// Whatever comes in, parsing answers (never panics), and what it accepts is
        /// stable: parsed again it is the same address with the same key, free of
        /// control characters.
        #[test]
        fn parsing_never_panics_and_what_it_accepts_is_stable(
            input in proptest::prop_oneof![
                ".{0,60}",
                "[ ]{0,2}[a-zA-Z0-9._%+\\-]{1,16}@[a-zA-Z0-9\\-]{1,12}\\.[a-zA-Z]{2,6}[ ]{0,2}",
            ]
        ) {
            if let Ok(email) = Email::parse(&input) {
                let again = Email::parse(email.as_str()).unwrap();
                proptest::prop_assert_eq!(again.as_str(), email.as_str());
                proptest::prop_assert_eq!(again.key(), email.key());
                proptest::prop_assert!(!email.as_str().chars().any(char::is_control));
            }
        }
    }
}
