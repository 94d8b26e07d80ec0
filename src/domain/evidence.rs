//! The evidence fields that come with a consent from outside (a partner's lead, an
//! integrator's record): IP address, times, URLs, user agent. Each is parsed before it is
//! kept, because the proof is only as good as its weakest field: `999.1.1.1` is no address
//! and a time in the future is no time a person agreed.

use std::net::IpAddr;

use chrono::{DateTime, TimeDelta, Utc};

use super::Invalid;

/// How far ahead of our clock a claimed time may be (the sender's clock may run fast).
pub const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The longest URL or user agent kept.
const MAX_URL: usize = 2048;
const MAX_USER_AGENT: usize = 1000;

/// An IPv4 or IPv6 address, answered in its canonical form (`::ffff:1.2.3.4` stays as
/// written by the standard library, `2001:DB8::1` becomes `2001:db8::1`).
pub fn parse_ip(input: &str) -> Result<IpAddr, Invalid> {
    input.trim().parse::<IpAddr>().map_err(|_| Invalid::new("must be an IPv4 or IPv6 address"))
}

/// An RFC 3339 time not after `now` (give or take [`CLOCK_SKEW`]), in UTC.
pub fn parse_past_time(input: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Invalid> {
    let at = DateTime::parse_from_rfc3339(input.trim())
        .map_err(|_| Invalid::new("must be an RFC 3339 time, e.g. 2026-11-29T10:00:00Z"))?
        .with_timezone(&Utc);
    if at > now + CLOCK_SKEW {
        return Err(Invalid::new("must not be in the future"));
    }
    Ok(at)
}

/// An absolute `http://` or `https://` URL with a host: where a person gave their consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUrl(String);

impl SourceUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Checks the shape an absolute web URL must have, without resolving anything: a scheme
/// of `http` or `https`, `://`, a host name (letters, digits, `-`, `.`), an IPv4 address
/// or a bracketed IPv6 one, an optional port, then any path, query and fragment without
/// spaces or control characters.
pub fn parse_source_url(input: &str) -> Result<SourceUrl, Invalid> {
    let invalid = || Invalid::new("must be an absolute http:// or https:// URL");
    let url = input.trim();
    if url.is_empty() || url.len() > MAX_URL || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid());
    }
    let (scheme, rest) = url.split_once("://").ok_or_else(invalid)?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(invalid());
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    // Credentials in a URL are no evidence of anything, and hide the real host.
    if authority.contains('@') {
        return Err(invalid());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (ip, after) = bracketed.split_once(']').ok_or_else(invalid)?;
            ip.parse::<std::net::Ipv6Addr>().map_err(|_| invalid())?;
            match after {
                "" => (ip, None),
                _ => (ip, Some(after.strip_prefix(':').ok_or_else(invalid)?)),
            }
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if let Some(port) = port
        && (port.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(invalid());
    }
    let bracketed = authority.starts_with('[');
    let name_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let all_digits = host.chars().all(|c| c.is_ascii_digit() || c == '.');
    // A host of digits and dots must be a real IPv4 address (`999.1.1.1` is not).
    if !bracketed && (!name_ok || (all_digits && host.parse::<std::net::Ipv4Addr>().is_err())) {
        return Err(invalid());
    }
    Ok(SourceUrl(url.to_owned()))
}

/// A user agent as sent, without control characters, at most 1000 characters.
pub fn parse_user_agent(input: &str) -> Result<String, Invalid> {
    if input.chars().count() > MAX_USER_AGENT {
        return Err(Invalid::new("must be at most 1000 characters"));
    }
    if input.chars().any(char::is_control) {
        return Err(Invalid::new("must not contain control characters"));
    }
    Ok(input.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ip_must_parse_as_ipv4_or_ipv6() {
        assert_eq!(parse_ip("203.0.113.7").map(|ip| ip.to_string()), Ok("203.0.113.7".to_owned()));
        assert_eq!(parse_ip("2001:DB8::1").map(|ip| ip.to_string()), Ok("2001:db8::1".to_owned()));
        for bad in ["999.1.1.1", "1.2.3", "localhost", "", "1.2.3.4:80", "::g"] {
            assert!(parse_ip(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_time_must_be_rfc_3339_and_not_in_the_future() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z").unwrap().with_timezone(&Utc);
        assert!(parse_past_time("2026-11-29T10:00:00Z", now).is_ok());
        assert!(parse_past_time("2026-12-01T11:00:00+01:00", now).is_ok(), "the same instant elsewhere");
        assert!(parse_past_time("2026-12-01T10:04:00Z", now).is_ok(), "within the clock skew");
        assert_eq!(parse_past_time("2026-12-01T10:06:00Z", now), Err(Invalid::new("must not be in the future")));
        for bad in ["yesterday", "2026-11-29", "2026-11-29 10:00:00", ""] {
            assert!(parse_past_time(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_source_url_must_be_an_absolute_web_url() {
        for good in [
            "https://acme.example/contest",
            "http://acme.example",
            "HTTPS://Acme.Example:8443/a?b=c#d",
            "http://203.0.113.7/form",
            "http://[2001:db8::1]:8080/",
        ] {
            assert!(parse_source_url(good).is_ok(), "{good}");
        }
        for bad in [
            "/contest",
            "acme.example/contest",
            "ftp://acme.example",
            "javascript:alert(1)",
            "https://",
            "https://exa mple.org",
            "https://user:pw@acme.example/",
            "http://999.1.1.1/",
            "http://acme.example:99999/",
            "http://[::g]/",
            "http://-acme.example/",
        ] {
            assert!(parse_source_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_user_agent_has_no_control_characters_and_a_bound() {
        assert!(parse_user_agent("Mozilla/5.0 (X11; Linux x86_64)").is_ok());
        assert!(parse_user_agent("evil\r\nSet-Cookie: x").is_err());
        assert!(parse_user_agent(&"a".repeat(1001)).is_err());
    }
}
