//! The HTTP egress policy: which hosts a plugin may reach through `wasi:http`, enforced by the host.
//!
//! A request is allowed only if its `host:port` matches an entry of the plugin's `allowed_hosts`
//! and every address the host name resolves to is acceptable. An address in a special-purpose
//! block that is not globally reachable ([`refused_block`]: loopback, private, link-local with
//! the cloud metadata address 169.254.169.254 however it is spelled, CGNAT, benchmarking,
//! reserved, ...) is refused unless the matching entry names that IP address literally (or is
//! `localhost`, for loopback). The connection then goes to the addresses that were checked
//! ([`super::http_client`]), with TLS verified against the host name.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::http_client::Network;
use super::trust::Trust;

/// `http_timeout_ms` when a plugin does not set it: connect, first byte and between bytes.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 10_000;
/// `max_response_bytes` when a plugin does not set it.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
/// The host label of requests to hosts outside `allowed_hosts` (see
/// [`EgressPolicy::host_label`]).
pub const OTHER_HOSTS: &str = "other";
/// Longest a host name lookup may take (or `http_timeout_ms`, if shorter): a resolver that
/// does not answer fails the request with `DNS-timeout` rather than holding it.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// One `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    /// The entry as written (trimmed): what requests it allows are counted under.
    written: String,
    host: HostPattern,
    /// `None`: the scheme's default port only. `Some(None)`: any port (`host:*`).
    port: Option<Option<u16>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// An exact host name, lower case, no trailing dot.
    Name(String),
    /// `*.suffix`: any name ending in `.suffix`.
    Subdomains(String),
    /// An IP literal: the only way to allow a non-public address.
    Ip(IpAddr),
}

/// A plugin's egress policy.
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    rules: Vec<Rule>,
    /// Clamp on connect, first-byte and between-bytes timeouts.
    pub timeout: Duration,
    /// Cap on a response body.
    pub max_response_bytes: usize,
    /// Limit on the host name lookup: [`DNS_TIMEOUT`], or `timeout` if shorter.
    dns_timeout: Duration,
    /// What `https://` requests are verified against: the OS trust store, plus `ca_file`.
    pub trust: Trust,
}

/// Why a request was refused before any connection was made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not in `allowed_hosts`.
    #[error("{0} is not in the plugin's allowed_hosts")]
    NotListed(String),
    /// Resolves to an address that must be listed as an IP literal.
    #[error(
        "{host} resolves to {ip}, which is not publicly routable ({block}); list \"{ip}\" in allowed_hosts to allow it"
    )]
    Internal {
        /// Host requested.
        host: String,
        /// The address refused.
        ip: IpAddr,
        /// The special-purpose block it is in.
        block: &'static str,
    },
    /// The name did not resolve.
    #[error("{0} did not resolve to any address")]
    Unresolved(String),
    /// The name lookup took too long.
    #[error("looking up {0} took longer than {1:?}")]
    DnsTimeout(String, Duration),
}

impl EgressPolicy {
    /// Parses `allowed_hosts` entries: `host:port`, `host:*`, `host` (default port),
    /// `*.example.com:443`, `127.0.0.1:8080`, `[::1]:8080`.
    pub fn new(
        allowed_hosts: &[String],
        timeout: Duration,
        max_response_bytes: usize,
    ) -> Result<Self, String> {
        let rules = allowed_hosts
            .iter()
            .map(|entry| {
                parse_rule(entry).ok_or_else(|| {
                    format!("{entry:?} is not host, host:port, host:* or *.domain:port")
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            timeout,
            max_response_bytes,
            dns_timeout: DNS_TIMEOUT.min(timeout),
            trust: Trust::default(),
        })
    }

    /// The same policy, trusting the CA certificates of the PEM file at `path` besides the OS
    /// trust store (`ca_file`). Errors name the file.
    pub fn with_ca_file(self, path: &std::path::Path) -> Result<Self, String> {
        Ok(Self {
            trust: Trust::with_ca_file(path)?,
            ..self
        })
    }

    /// A policy that allows nothing.
    pub fn deny_all() -> Self {
        Self {
            rules: Vec::new(),
            timeout: Duration::from_millis(DEFAULT_HTTP_TIMEOUT_MS),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            dns_timeout: DNS_TIMEOUT,
            trust: Trust::default(),
        }
    }

    /// What a request to `host:port` is counted under: the `allowed_hosts` entry it matches as
    /// written, or [`OTHER_HOSTS`] — a set as small as the list, whatever plugins ask for.
    pub fn host_label(&self, host: &str, port: u16, default_port: u16) -> &str {
        self.matching(&normalise(host), port, default_port)
            .map_or(OTHER_HOSTS, |rule| rule.written.as_str())
    }

    fn matching(&self, host: &str, port: u16, default_port: u16) -> Option<&Rule> {
        let host_ip = parse_ip(host);
        self.rules.iter().find(|rule| {
            let port_ok = match rule.port {
                None => port == default_port,
                Some(None) => true,
                Some(Some(p)) => p == port,
            };
            port_ok
                && match (&rule.host, host_ip) {
                    (HostPattern::Ip(ip), Some(h)) => canonical(*ip) == canonical(h),
                    (HostPattern::Name(name), None) => name == host,
                    (HostPattern::Subdomains(suffix), None) => host
                        .strip_suffix(suffix.as_str())
                        .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
                    _ => false,
                }
        })
    }

    /// Decides on a request to `host:port` whose name resolved to `resolved`; returns the
    /// addresses to connect to, in the resolver's order: the resolved ones themselves (an
    /// IPv4-mapped one as its IPv4 address), never an IPv4 address a NAT64 or 6to4 one carries.
    pub fn check(
        &self,
        host: &str,
        port: u16,
        default_port: u16,
        resolved: &[IpAddr],
    ) -> Result<Vec<SocketAddr>, Denied> {
        let host = normalise(host);
        let shown = format!("{host}:{port}");
        let rule = self
            .matching(&host, port, default_port)
            .ok_or_else(|| Denied::NotListed(shown.clone()))?;
        if resolved.is_empty() {
            return Err(Denied::Unresolved(shown));
        }
        let mut targets = Vec::with_capacity(resolved.len());
        for ip in resolved {
            let ip = canonical(*ip);
            let explicit = match &rule.host {
                HostPattern::Ip(listed) => canonical(*listed) == ip,
                HostPattern::Name(name) => name == "localhost" && ip.is_loopback(),
                HostPattern::Subdomains(_) => false,
            };
            if !explicit && let Some(block) = refused_block(ip) {
                return Err(Denied::Internal { host, ip, block });
            }
            let target = SocketAddr::new(ip, port);
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        Ok(targets)
    }

    /// Resolves `host` through `net` (an IP literal as itself; a name not in `allowed_hosts` is
    /// never looked up), within the DNS timeout, and [`check`](Self::check)s every address.
    async fn resolve<N: Network>(
        &self,
        net: &N,
        host: &str,
        port: u16,
        default_port: u16,
    ) -> Result<Vec<SocketAddr>, Denied> {
        let name = normalise(host);
        let resolved = match parse_ip(&name) {
            Some(ip) => vec![ip],
            None if self.matching(&name, port, default_port).is_none() => Vec::new(),
            None => match tokio::time::timeout(self.dns_timeout, net.lookup(&name, port)).await {
                Err(_) => {
                    return Err(Denied::DnsTimeout(
                        format!("{name}:{port}"),
                        self.dns_timeout,
                    ));
                }
                Ok(Ok(ips)) => ips,
                Ok(Err(e)) => {
                    tracing::debug!(host = name, error = %e, "HTTP host name lookup failed");
                    Vec::new()
                }
            },
        };
        self.check(host, port, default_port, &resolved)
    }
}

fn normalise(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.trim_end_matches('.').to_ascii_lowercase()
}

fn parse_ip(host: &str) -> Option<IpAddr> {
    host.parse().ok()
}

fn parse_rule(entry: &str) -> Option<Rule> {
    let entry = entry.trim();
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return None;
        }
        let port = if after.is_empty() {
            None
        } else {
            Some(after.strip_prefix(':')?)
        };
        (ip.to_owned(), port)
    } else if entry.matches(':').count() > 1 {
        (entry.to_owned(), None) // a bare IPv6 address
    } else {
        match entry.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (entry.to_owned(), None),
        }
    };
    // Brackets only around an IPv6 address, as a whole (`localhost]:80` is a typo, not a host).
    if host.contains(['[', ']']) {
        return None;
    }
    let port = match port {
        None => None,
        Some("*") => Some(None),
        Some(p) => Some(Some(p.parse().ok()?)),
    };
    let host = normalise(&host);
    if host.is_empty() {
        return None;
    }
    let host = if let Some(ip) = parse_ip(&host) {
        HostPattern::Ip(ip)
    } else if let Some(suffix) = host.strip_prefix("*.") {
        if suffix.is_empty() || suffix.contains('*') {
            return None;
        }
        HostPattern::Subdomains(suffix.to_owned())
    } else if host.contains('*') {
        return None;
    } else {
        HostPattern::Name(host)
    };
    Some(Rule {
        written: entry.to_owned(),
        host,
        port,
    })
}

mod hooks;
pub use hooks::{EgressCounter, EgressHooks, EgressResult};

mod blocks;

use blocks::canonical;
pub use blocks::{is_public, refused_block};

#[cfg(test)]
mod tests;
