//! The HTTP egress policy: which hosts a plugin may reach through `wasi:http`, enforced by the host.
//!
//! A request is allowed only if its `host:port` matches an entry of the plugin's `allowed_hosts`
//! and every address the host name resolves to is acceptable. Loopback, private, link-local
//! (the cloud metadata address 169.254.169.254 included, however it is spelled), shared and
//! unspecified addresses are refused unless the matching entry names that IP address literally
//! (or is `localhost`, for loopback). The connection then goes to the address that was checked
//! ([`super::http_client`]), with TLS verified against the host name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// `http_timeout_ms` when a plugin does not set it: connect, first byte and between bytes.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 10_000;
/// `max_response_bytes` when a plugin does not set it.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;

/// One `allowed_hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
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
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Not in `allowed_hosts`.
    #[error("{0} is not in the plugin's allowed_hosts")]
    NotListed(String),
    /// Resolves to an address that must be listed as an IP literal.
    #[error(
        "{host} resolves to {ip}, a non-public address; list \"{ip}\" in allowed_hosts to allow it"
    )]
    Internal {
        /// Host requested.
        host: String,
        /// The address refused.
        ip: IpAddr,
    },
    /// The name did not resolve.
    #[error("{0} did not resolve to any address")]
    Unresolved(String),
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
        })
    }

    /// A policy that allows nothing.
    pub fn deny_all() -> Self {
        Self {
            rules: Vec::new(),
            timeout: Duration::from_millis(DEFAULT_HTTP_TIMEOUT_MS),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
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
    /// address to connect to.
    pub fn check(
        &self,
        host: &str,
        port: u16,
        default_port: u16,
        resolved: &[IpAddr],
    ) -> Result<SocketAddr, Denied> {
        let host = normalise(host);
        let shown = format!("{host}:{port}");
        let rule = self
            .matching(&host, port, default_port)
            .ok_or_else(|| Denied::NotListed(shown.clone()))?;
        let first = *resolved.first().ok_or(Denied::Unresolved(shown))?;
        for ip in resolved {
            let ip = canonical(*ip);
            let explicit = match &rule.host {
                HostPattern::Ip(listed) => canonical(*listed) == ip,
                HostPattern::Name(name) => name == "localhost" && ip.is_loopback(),
                HostPattern::Subdomains(_) => false,
            };
            if !explicit && !is_public(ip) {
                return Err(Denied::Internal { host, ip });
            }
        }
        Ok(SocketAddr::new(canonical(first), port))
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
        (ip.to_owned(), after.strip_prefix(':'))
    } else if entry.matches(':').count() > 1 {
        (entry.to_owned(), None) // a bare IPv6 address
    } else {
        match entry.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (entry.to_owned(), None),
        }
    };
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
    Some(Rule { host, port })
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 address an IPv6 address stands for, where the network would deliver it there:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`, deprecated but routable on
/// some stacks), NAT64 (`64:ff9b::/96` and the local-use `64:ff9b:1::/48`) and 6to4
/// (`2002:AABB:CCDD::/48`). Judged as that IPv4 address, so `64:ff9b::a9fe:a9fe` is the cloud
/// metadata address it reaches through a NAT64 gateway.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(mapped) = ip.to_ipv4_mapped() {
        return Some(mapped);
    }
    match s {
        // ::a.b.c.d, but not :: or ::1 (unspecified and loopback stay IPv6).
        [0, 0, 0, 0, 0, 0, _, _] if s[6] != 0 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 1, ..] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// True for addresses on the public internet; false for loopback, private, link-local,
/// shared (CGNAT), unspecified, broadcast, documentation and multicast ranges.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)))
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let [first, second, ..] = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated, still private)
        || (first == 0x2001 && second == 0x0db8) // documentation
        || (first == 0x2001 && second == 0) // Teredo: tunnels to an address it does not show
        || (first == 0x0100 && ip.segments()[1..4] == [0, 0, 0])) // discard-only 100::/64
}

/// The `wasi:http` hooks of one plugin instance: every request passes [`EgressPolicy::check`].
pub struct EgressHooks {
    policy: Arc<EgressPolicy>,
    plugin: Arc<str>,
}

impl EgressHooks {
    /// Hooks enforcing `policy` for `plugin`.
    pub fn new(policy: Arc<EgressPolicy>, plugin: Arc<str>) -> Self {
        Self { policy, plugin }
    }
}

fn clamp(options: Option<RequestOptions>, limit: Duration) -> RequestOptions {
    let pick = |asked: Option<Duration>| Some(asked.map_or(limit, |d| d.min(limit)));
    let asked = options.unwrap_or_default();
    RequestOptions {
        connect_timeout: pick(asked.connect_timeout),
        first_byte_timeout: pick(asked.first_byte_timeout),
        between_bytes_timeout: pick(asked.between_bytes_timeout),
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let policy = self.policy.clone();
        let plugin = self.plugin.clone();
        Box::new(async move {
            let uri = request.uri().clone();
            let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
            let default_port = if tls { 443 } else { 80 };
            let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
            let host = authority.host().to_owned();
            let port = authority.port_u16().unwrap_or(default_port);
            let name = normalise(&host);
            // Resolve once; the connection goes to the address that was checked.
            let resolved: Vec<IpAddr> = match parse_ip(&name) {
                Some(ip) => vec![ip],
                None => match policy.matching(&name, port, default_port) {
                    None => Vec::new(),
                    Some(_) => tokio::net::lookup_host((name.as_str(), port))
                        .await
                        .map(|addrs| addrs.map(|a| a.ip()).collect())
                        .unwrap_or_default(),
                },
            };
            let target = policy
                .check(&host, port, default_port, &resolved)
                .map_err(|denied| {
                    tracing::warn!(plugin = &*plugin, url = %uri, %denied, "HTTP request denied");
                    match denied {
                        Denied::Unresolved(_) => HttpError::DnsError {
                            rcode: Some("no address".into()),
                            info_code: None,
                        },
                        _ => HttpError::HttpRequestDenied,
                    }
                })?;
            let options = clamp(options, policy.timeout);
            let (response, io) =
                super::http_client::send(request, target, &name, tls, options).await?;
            let limit = policy.max_response_bytes;
            // A response that announces a body over the cap is refused before the plugin
            // reads any of it, with the error code the plugin can tell apart (a cap hit while
            // streaming reaches the guest only as a failed read).
            if let Some(length) = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                && length > limit as u64
            {
                tracing::warn!(plugin = &*plugin, url = %uri, length, limit, "HTTP response body over max_response_bytes: refused");
                return Err(HttpError::HttpResponseBodySize(Some(limit as u64)));
            }
            let response = response.map(|body| {
                Limited::new(body, limit)
                    .map_err(move |e| match e.downcast::<HttpError>() {
                        Ok(inner) => *inner,
                        Err(_) => HttpError::HttpResponseBodySize(Some(limit as u64)),
                    })
                    .boxed_unsync()
            });
            Ok((response, io))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str]) -> EgressPolicy {
        let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
        EgressPolicy::new(&hosts, Duration::from_secs(1), 1024).expect("valid")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn empty_list_allows_nothing() {
        let p = policy(&[]);
        assert!(matches!(
            p.check("example.com", 443, 443, &[ip("93.184.216.34")]),
            Err(Denied::NotListed(_))
        ));
    }

    #[test]
    fn host_and_port_must_match() {
        let p = policy(&[
            "api.example.com:443",
            "*.svc.example.org:8443",
            "plain.example.com",
        ]);
        assert!(
            p.check("api.example.com", 443, 443, &[ip("93.184.216.34")])
                .is_ok()
        );
        assert!(
            p.check("API.example.com.", 443, 443, &[ip("93.184.216.34")])
                .is_ok()
        );
        assert!(
            p.check("api.example.com", 80, 80, &[ip("93.184.216.34")])
                .is_err()
        );
        assert!(
            p.check("a.svc.example.org", 8443, 443, &[ip("93.184.216.35")])
                .is_ok()
        );
        assert!(
            p.check("svc.example.org", 8443, 443, &[ip("93.184.216.35")])
                .is_err()
        );
        assert!(
            p.check("evilsvc.example.org", 8443, 443, &[ip("93.184.216.35")])
                .is_err()
        );
        assert!(
            p.check("plain.example.com", 80, 80, &[ip("93.184.216.36")])
                .is_ok()
        );
        assert!(
            p.check("plain.example.com", 8080, 80, &[ip("93.184.216.36")])
                .is_err()
        );
    }

    #[test]
    fn allowed_name_pointing_inside_is_refused() {
        let p = policy(&["api.example.com:443"]);
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.1.1",
            "172.16.0.1",
            "169.254.169.254",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            // IPv4 inside IPv6: compatible, NAT64 (well-known and local-use), 6to4.
            "::a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:1",
            "2002:a9fe:a9fe::1",
            // Site-local, documentation, Teredo.
            "fec0::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
        ] {
            assert!(
                matches!(
                    p.check("api.example.com", 443, 443, &[ip(inside)]),
                    Err(Denied::Internal { .. })
                ),
                "{inside} should be refused"
            );
        }
    }

    #[test]
    fn public_addresses_pass_in_any_spelling() {
        for public in [
            "93.184.216.34",
            "2606:4700::1111",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
        ] {
            assert!(is_public(ip(public)), "{public} is public");
        }
    }

    #[test]
    fn internal_addresses_need_an_ip_literal() {
        let p = policy(&["127.0.0.1:8080", "[::1]:9000", "localhost:7000"]);
        assert_eq!(
            p.check("127.0.0.1", 8080, 80, &[ip("127.0.0.1")]),
            Ok("127.0.0.1:8080".parse().expect("addr"))
        );
        assert!(p.check("127.0.0.1", 8081, 80, &[ip("127.0.0.1")]).is_err());
        assert!(p.check("[::1]", 9000, 80, &[ip("::1")]).is_ok());
        assert!(p.check("localhost", 7000, 80, &[ip("127.0.0.1")]).is_ok());
        assert!(p.check("localhost", 7000, 80, &[ip("10.0.0.1")]).is_err());
        assert!(
            p.check("169.254.169.254", 80, 80, &[ip("169.254.169.254")])
                .is_err()
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        for bad in ["", "a:b", "*", "*.", "a.*.com:80", "[::1"] {
            assert!(
                EgressPolicy::new(&[bad.to_string()], Duration::from_secs(1), 1).is_err(),
                "{bad:?}"
            );
        }
    }
}
