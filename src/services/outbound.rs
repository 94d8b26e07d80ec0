//! Which addresses outgoing requests (webhooks, partner deliveries) may reach.
//!
//! A receiver URL is written by an admin or a partner, and the server, inside the
//! operator's network, calls it: pointed at `127.0.0.1`, `10.…`, `169.254.169.254` (a
//! cloud's metadata service, which hands out credentials) or a host name resolving there,
//! it would make the server reach what only it can reach (server-side request forgery).
//! So by default such addresses are refused, whatever their spelling (`[::ffff:127.0.0.1]`,
//! `2130706433`, `0x7f.1`: URL parsing turns them all into the one address), and host
//! names are checked after DNS, on the addresses the connection will use, so that a name
//! that resolves to a public address when stored and to a private one later (DNS
//! rebinding) is still refused. `outbound_allowed_hosts` names the hosts that may.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::settings::Settings;

/// The hosts that may be internal addresses; every other host must be public.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed_hosts: Arc<Vec<String>>,
}

/// A connection refused by the policy; its text says why, for the delivery's log.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

impl OutboundPolicy {
    pub fn from_settings(settings: &Settings) -> Self {
        Self::allowing(&settings.outbound_allowed_hosts)
    }

    pub fn allowing(hosts: &[String]) -> Self {
        let hosts = hosts.iter().map(|h| normalize_host(h)).filter(|h| !h.is_empty()).collect();
        Self { allowed_hosts: Arc::new(hosts) }
    }

    fn allows_host(&self, host: &str) -> bool {
        let host = normalize_host(host);
        self.allowed_hosts.contains(&host)
    }

    /// Checks a receiver URL when it is stored: http(s) with a host, and not an address
    /// (or a name such as `localhost` that always is one) the policy refuses. Other names
    /// are checked when connecting, on what they resolve to then.
    pub fn check_receiver_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|_| "must be an http:// or https:// URL".to_owned())?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
            return Err("must be an http:// or https:// URL".to_owned());
        }
        if let Some(why) = self.refusal(&parsed) {
            return Err(format!("must not point at {why}"));
        }
        Ok(())
    }

    /// Checks a URL just before connecting, for what DNS does not see: an address written
    /// in the URL itself. Names are checked by [`GuardedResolver`].
    pub fn check_connect(&self, url: &str) -> Result<(), Refused> {
        let parsed = reqwest::Url::parse(url).map_err(|e| Refused(format!("the URL is not valid: {e}")))?;
        match self.refusal(&parsed) {
            Some(why) => Err(Refused(format!("refused to connect to {why}"))),
            None => Ok(()),
        }
    }

    fn refusal(&self, url: &reqwest::Url) -> Option<String> {
        let host = url.host_str()?;
        if self.allows_host(host) {
            return None;
        }
        // URL parsing has already written any IPv4 spelling (decimal, hex, octal) the
        // standard way, so an address is recognised by parsing the host as one.
        let Ok(ip) = normalize_host(host).parse::<IpAddr>() else {
            let name = normalize_host(host);
            return (name == "localhost" || name.ends_with(".localhost"))
                .then(|| format!("{name}, a loopback address{}", allow_hint()));
        };
        internal_kind(ip).map(|kind| format!("{ip}, {kind}{}", allow_hint()))
    }

    /// A reqwest client that connects only where the policy allows.
    pub fn client(&self, builder: reqwest::ClientBuilder) -> reqwest::Result<reqwest::Client> {
        builder
            .dns_resolver(Arc::new(GuardedResolver { policy: self.clone(), lookup: system_lookup }))
            // Through a proxy the resolver would see the proxy's name, not the receiver's.
            .no_proxy()
            .build()
    }
}

fn allow_hint() -> &'static str {
    " (outbound_allowed_hosts names the hosts that may be reached there)"
}

fn normalize_host(host: &str) -> String {
    host.trim().trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase()
}

/// Resolves names as the system does, then keeps only the addresses the policy allows.
struct GuardedResolver {
    policy: OutboundPolicy,
    /// The system's resolver; tests give another.
    lookup: fn(&str) -> std::io::Result<Vec<SocketAddr>>,
}

fn system_lookup(host: &str) -> std::io::Result<Vec<SocketAddr>> {
    (host, 0).to_socket_addrs().map(Iterator::collect)
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let (policy, lookup) = (self.policy.clone(), self.lookup);
        Box::pin(async move {
            let name = host.clone();
            // getaddrinfo blocks, as reqwest's own resolver knows.
            let addresses = tokio::task::spawn_blocking(move || lookup(&name)).await??;
            if policy.allows_host(&host) {
                return Ok(Box::new(addresses.into_iter()) as Addrs);
            }
            let (public, internal): (Vec<SocketAddr>, Vec<SocketAddr>) =
                addresses.into_iter().partition(|address| internal_kind(address.ip()).is_none());
            if public.is_empty() {
                let why = match internal.first() {
                    Some(address) => format!(
                        "refused to connect to {host}: it resolves to {}, {}{}",
                        address.ip(),
                        internal_kind(address.ip()).unwrap_or("an internal address"),
                        allow_hint()
                    ),
                    None => format!("{host} resolves to no address"),
                };
                return Err(Box::new(Refused(why)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// What kind of internal address `ip` is, or `None` for a public one. IPv6 forms that
/// carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by that address.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_kind(v4),
        IpAddr::V6(v6) if v6.is_loopback() => Some("a loopback address"),
        IpAddr::V6(v6) if v6.is_unspecified() => Some("the unspecified address"),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => v4_kind(v4),
            None => v6_kind(v6),
        },
    }
}

fn v4_kind(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "a loopback address",
        // AWS, GCP, Azure (169.254.169.254), Alibaba (100.100.100.200).
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) || ip == Ipv4Addr::new(100, 100, 100, 200) => {
            "a cloud metadata address"
        }
        _ if ip.is_private() => "a private address",
        _ if ip.is_link_local() => "a link-local address",
        _ if a == 0 => "an address of this network (0.0.0.0/8)",
        _ if a == 100 && (b & 0xc0) == 64 => "a carrier-grade NAT address",
        _ if a == 192 && b == 0 && c == 0 => "an IETF protocol address",
        _ if a == 198 && (b & 0xfe) == 18 => "a benchmarking address",
        _ if a >= 224 => "a multicast, reserved or broadcast address",
        _ => return None,
    })
}

fn v6_kind(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        // Unique local, which also holds AWS's IPv6 metadata address fd00:ec2::254.
        _ if first & 0xfe00 == 0xfc00 => "a private address",
        _ if first & 0xffc0 == 0xfe80 => "a link-local address",
        _ if first & 0xffc0 == 0xfec0 => "a site-local address",
        _ if first & 0xff00 == 0xff00 => "a multicast address",
        _ => return None,
    })
}

fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let v4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        // IPv4-compatible (::a.b.c.d) or NAT64 (64:ff9b::a.b.c.d).
        Some(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(v4(s[1], s[2]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        OutboundPolicy::default().check_receiver_url(url).is_err()
    }

    #[test]
    fn internal_addresses_are_refused_in_every_spelling() {
        for url in [
            "http://127.0.0.1/",
            "http://127.1.2.3:8080/x",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://0177.0.0.1/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a00:1::]/",
            "http://10.0.0.5/",
            "http://172.16.3.4/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.100.100.200/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://localhost:9000/",
            "http://api.localhost/",
            "http://LOCALHOST./",
        ] {
            assert!(refused(url), "{url} was accepted");
        }
    }

    #[test]
    fn public_addresses_and_names_pass_the_stored_check() {
        for url in
            ["https://8.8.8.8/hook", "https://[2606:4700::1111]/", "https://hooks.example.com/x", "http://172.32.0.1/"]
        {
            assert!(!refused(url), "{url} was refused");
        }
        assert!(refused("ftp://example.com/"));
    }

    fn rebound(host: &str) -> std::io::Result<Vec<SocketAddr>> {
        Ok(match host {
            "rebound.example" => vec!["127.0.0.1:0".parse().unwrap()],
            "metadata.example" => vec!["[::ffff:169.254.169.254]:0".parse().unwrap()],
            _ => vec!["192.168.0.9:0".parse().unwrap(), "93.184.215.14:0".parse().unwrap()],
        })
    }

    async fn resolve(policy: OutboundPolicy, host: &str) -> Result<Vec<SocketAddr>, String> {
        let resolver = GuardedResolver { policy, lookup: rebound };
        match resolver.resolve(host.parse().unwrap()).await {
            Ok(addresses) => Ok(addresses.collect()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[tokio::test]
    async fn a_name_is_judged_by_the_addresses_it_resolves_to_when_connecting() {
        let refused = resolve(OutboundPolicy::default(), "rebound.example").await.unwrap_err();
        assert!(refused.contains("rebound.example: it resolves to 127.0.0.1, a loopback address"), "{refused}");
        let refused = resolve(OutboundPolicy::default(), "metadata.example").await.unwrap_err();
        assert!(refused.contains("a cloud metadata address"), "{refused}");
        // Of a mixed answer, only the public addresses are used.
        let kept = resolve(OutboundPolicy::default(), "mixed.example").await.unwrap();
        assert_eq!(kept, ["93.184.215.14:0".parse().unwrap()]);
        // An allowed name keeps every address.
        let allowed = OutboundPolicy::allowing(&["rebound.example".to_owned()]);
        assert_eq!(resolve(allowed, "rebound.example").await.unwrap(), ["127.0.0.1:0".parse().unwrap()]);
    }

    #[test]
    fn a_named_host_may_be_allowed() {
        let policy =
            OutboundPolicy::allowing(&["127.0.0.1".to_owned(), "Receiver.Internal".to_owned(), "[::1]".to_owned()]);
        assert!(policy.check_receiver_url("http://127.0.0.1:8080/").is_ok());
        assert!(policy.check_receiver_url("http://[::1]:8080/").is_ok());
        assert!(policy.check_connect("http://127.0.0.1:8080/").is_ok());
        assert!(policy.check_connect("http://127.0.0.2:8080/").is_err());
        assert!(policy.allows_host("receiver.internal."));
        let message = OutboundPolicy::default().check_receiver_url("http://2130706433/").unwrap_err();
        assert!(message.contains("127.0.0.1, a loopback address"), "{message}");
    }
}
