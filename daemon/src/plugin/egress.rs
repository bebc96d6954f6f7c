//! The HTTP egress policy: which hosts a plugin may reach through `wasi:http`, enforced by the host.
//!
//! A request is allowed only if its `host:port` matches an entry of the plugin's `allowed_hosts`
//! and every address the host name resolves to is acceptable. An address in a special-purpose
//! block that is not globally reachable ([`refused_block`]: loopback, private, link-local with
//! the cloud metadata address 169.254.169.254 however it is spelled, CGNAT, benchmarking,
//! reserved, ...) is refused unless the matching entry names that IP address literally (or is
//! `localhost`, for loopback). The connection then goes to the addresses that were checked
//! ([`super::http_client`]), with TLS verified against the host name.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use super::http_client::{self, Network, System};
use super::trust::Trust;

/// `http_timeout_ms` when a plugin does not set it: connect, first byte and between bytes.
pub const DEFAULT_HTTP_TIMEOUT_MS: u64 = 10_000;
/// `max_response_bytes` when a plugin does not set it.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 10 * 1024 * 1024;
/// Longest a host name lookup may take (or `http_timeout_ms`, if shorter): a resolver that
/// does not answer fails the request with `DNS-timeout` rather than holding it.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

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

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) as the IPv4 address it is: the same
/// destination in another spelling. Other forms that carry an IPv4 address (NAT64, 6to4) stay
/// as they are: the network, not the socket layer, translates them.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// What egress makes of a special-purpose block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// Not globally reachable: refused unless listed as that IP literal.
    Refused,
    /// A globally reachable assignment inside a refused block.
    Global,
    /// Carries an IPv4 address (these four bytes of it) and reaches what that address
    /// reaches: judged as it.
    Carries([usize; 4]),
}

/// One special-purpose block, named as the IANA registries name it.
struct Block<A> {
    base: A,
    len: u32,
    name: &'static str,
    reach: Reach,
}

const fn v4(base: Ipv4Addr, len: u32, name: &'static str) -> Block<Ipv4Addr> {
    Block {
        base,
        len,
        name,
        reach: Reach::Refused,
    }
}

const fn v6(base: Ipv6Addr, len: u32, name: &'static str, reach: Reach) -> Block<Ipv6Addr> {
    Block {
        base,
        len,
        name,
        reach,
    }
}

const fn a4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

#[allow(clippy::too_many_arguments)]
const fn a6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16) -> Ipv6Addr {
    Ipv6Addr::new(a, b, c, d, e, f, g, h)
}

/// IPv4 blocks refused unless listed as an IP literal: every block of the IANA IPv4
/// Special-Purpose Address Registry that is not globally reachable, 192.0.0.0/24 as a whole
/// (its PCP and TURN anycast addresses included: no HTTP service lives there), the deprecated
/// 6to4 relay anycast block, and multicast.
const V4_REFUSED: &[Block<Ipv4Addr>] = &[
    v4(a4(0, 0, 0, 0), 8, "\"this network\" 0.0.0.0/8"),
    v4(a4(10, 0, 0, 0), 8, "private-use 10.0.0.0/8"),
    v4(
        a4(100, 64, 0, 0),
        10,
        "shared address space (CGNAT) 100.64.0.0/10",
    ),
    v4(a4(127, 0, 0, 0), 8, "loopback 127.0.0.0/8"),
    v4(a4(169, 254, 0, 0), 16, "link-local 169.254.0.0/16"),
    v4(a4(172, 16, 0, 0), 12, "private-use 172.16.0.0/12"),
    v4(
        a4(192, 0, 0, 0),
        24,
        "IETF protocol assignments 192.0.0.0/24",
    ),
    v4(
        a4(192, 0, 2, 0),
        24,
        "documentation (TEST-NET-1) 192.0.2.0/24",
    ),
    v4(
        a4(192, 88, 99, 0),
        24,
        "deprecated 6to4 relay anycast 192.88.99.0/24",
    ),
    v4(a4(192, 168, 0, 0), 16, "private-use 192.168.0.0/16"),
    v4(a4(198, 18, 0, 0), 15, "benchmarking 198.18.0.0/15"),
    v4(
        a4(198, 51, 100, 0),
        24,
        "documentation (TEST-NET-2) 198.51.100.0/24",
    ),
    v4(
        a4(203, 0, 113, 0),
        24,
        "documentation (TEST-NET-3) 203.0.113.0/24",
    ),
    v4(a4(224, 0, 0, 0), 4, "multicast 224.0.0.0/4"),
    v4(
        a4(255, 255, 255, 255),
        32,
        "limited broadcast 255.255.255.255",
    ),
    v4(a4(240, 0, 0, 0), 4, "reserved 240.0.0.0/4"),
];

/// IPv6 special-purpose blocks: the IANA IPv6 Special-Purpose Address Registry, with the
/// IPv4-translated, site-local and multicast blocks. The longest matching block decides; an
/// address in none is public if it is global unicast (2000::/3), refused otherwise.
const V6_BLOCKS: &[Block<Ipv6Addr>] = &[
    v6(
        a6(0, 0, 0, 0, 0, 0, 0, 0),
        128,
        "unspecified ::",
        Reach::Refused,
    ),
    v6(
        a6(0, 0, 0, 0, 0, 0, 0, 1),
        128,
        "loopback ::1",
        Reach::Refused,
    ),
    v6(
        a6(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        "IPv4-mapped ::ffff:0:0/96",
        Reach::Carries([12, 13, 14, 15]),
    ),
    v6(
        a6(0, 0, 0, 0, 0xffff, 0, 0, 0),
        96,
        "IPv4-translated ::ffff:0:0:0/96",
        Reach::Refused,
    ),
    v6(
        a6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        "NAT64 64:ff9b::/96",
        Reach::Carries([12, 13, 14, 15]),
    ),
    v6(
        a6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        "local-use NAT64 64:ff9b:1::/48",
        Reach::Refused,
    ),
    v6(
        a6(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only 100::/64",
        Reach::Refused,
    ),
    v6(
        a6(0x100, 0, 0, 1, 0, 0, 0, 0),
        64,
        "dummy prefix 100:0:0:1::/64",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments 2001::/23",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "Teredo 2001::/32",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 1, 0, 0, 0, 0, 0, 1),
        128,
        "PCP anycast 2001:1::1",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 1, 0, 0, 0, 0, 0, 2),
        128,
        "TURN anycast 2001:1::2",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 1, 0, 0, 0, 0, 0, 3),
        128,
        "DNS-SD SRP anycast 2001:1::3",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking 2001:2::/48",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 3, 0, 0, 0, 0, 0, 0),
        32,
        "AMT 2001:3::/32",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 4, 0x112, 0, 0, 0, 0, 0),
        48,
        "AS112-v6 2001:4:112::/48",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 0x10, 0, 0, 0, 0, 0, 0),
        28,
        "deprecated ORCHID 2001:10::/28",
        Reach::Refused,
    ),
    v6(
        a6(0x2001, 0x20, 0, 0, 0, 0, 0, 0),
        28,
        "ORCHIDv2 2001:20::/28",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 0x30, 0, 0, 0, 0, 0, 0),
        28,
        "drone remote ID tags 2001:30::/28",
        Reach::Global,
    ),
    v6(
        a6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation 2001:db8::/32",
        Reach::Refused,
    ),
    v6(
        a6(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        "6to4 2002::/16",
        Reach::Carries([2, 3, 4, 5]),
    ),
    v6(
        a6(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0),
        48,
        "AS112 direct delegation 2620:4f:8000::/48",
        Reach::Global,
    ),
    v6(
        a6(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation 3fff::/20",
        Reach::Refused,
    ),
    v6(
        a6(0x5f00, 0, 0, 0, 0, 0, 0, 0),
        16,
        "SRv6 SIDs 5f00::/16",
        Reach::Refused,
    ),
    v6(
        a6(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique local fc00::/7",
        Reach::Refused,
    ),
    v6(
        a6(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        "link-local fe80::/10",
        Reach::Refused,
    ),
    v6(
        a6(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        "deprecated site-local fec0::/10",
        Reach::Refused,
    ),
    v6(
        a6(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        "multicast ff00::/8",
        Reach::Refused,
    ),
];

/// Why an IPv6 address outside every block and outside 2000::/3 is refused.
const NOT_GLOBAL_UNICAST: &str = "not global unicast (outside 2000::/3)";

/// True if the first `len` bits of `a` and `b` are equal.
fn same_prefix(a: u128, b: u128, len: u32, width: u32) -> bool {
    len == 0 || (a ^ b) >> (width - len) == 0
}

/// The special-purpose block that keeps `ip` from being reached (unless it is listed as an IP
/// literal), or `None` for a public address. An address carrying an IPv4 one (IPv4-mapped,
/// NAT64 `64:ff9b::/96`, 6to4) is judged as that IPv4 address.
pub fn refused_block(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let bits = u128::from(ip.to_bits());
    V4_REFUSED
        .iter()
        .find(|b| same_prefix(bits, u128::from(b.base.to_bits()), b.len, 32))
        .map(|b| b.name)
}

fn refused_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let bits = ip.to_bits();
    let block = V6_BLOCKS
        .iter()
        .filter(|b| same_prefix(bits, b.base.to_bits(), b.len, 128))
        .max_by_key(|b| b.len);
    match block.map(|b| (b.name, b.reach)) {
        Some((name, Reach::Refused)) => Some(name),
        Some((_, Reach::Global)) => None,
        Some((_, Reach::Carries(at))) => {
            let o = ip.octets();
            refused_v4(Ipv4Addr::new(o[at[0]], o[at[1]], o[at[2]], o[at[3]]))
        }
        None if bits >> 125 == 0b001 => None,
        None => Some(NOT_GLOBAL_UNICAST),
    }
}

/// True for addresses on the public internet: see [`refused_block`].
pub fn is_public(ip: IpAddr) -> bool {
    refused_block(ip).is_none()
}

/// The `wasi:http` hooks of one plugin instance: every request passes [`EgressPolicy::check`].
pub struct EgressHooks<N: Network = System> {
    policy: Arc<EgressPolicy>,
    plugin: Arc<str>,
    net: Arc<N>,
}

impl EgressHooks {
    /// Hooks enforcing `policy` for `plugin`, on the operating system's network.
    pub fn new(policy: Arc<EgressPolicy>, plugin: Arc<str>) -> Self {
        Self::with_network(policy, plugin, Arc::new(System))
    }
}

impl<N: Network> EgressHooks<N> {
    /// Hooks enforcing `policy` for `plugin`, resolving and connecting through `net`.
    pub fn with_network(policy: Arc<EgressPolicy>, plugin: Arc<str>, net: Arc<N>) -> Self {
        Self {
            policy,
            plugin,
            net,
        }
    }
}

/// A request's URL as logs may show it: scheme, host and port, never user info, path or
/// query, where tokens live.
fn shown(uri: &http::Uri) -> String {
    let scheme = uri.scheme_str().unwrap_or("http");
    let default_port = if scheme == "https" { 443 } else { 80 };
    match uri.authority() {
        Some(authority) => format!(
            "{scheme}://{}:{}",
            authority.host().to_ascii_lowercase(),
            authority.port_u16().unwrap_or(default_port)
        ),
        None => format!("{scheme}://?"),
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

type Response = (http::Response<WasiBody>, http_client::IoFuture);

type ResponseFuture = Box<dyn Future<Output = Result<Response, HttpError>> + Send>;

impl<N: Network> WasiHttpHooks for EgressHooks<N> {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        drop(fut);
        let policy = self.policy.clone();
        let plugin = self.plugin.clone();
        let net = self.net.clone();
        Box::new(async move { send(&policy, &plugin, &*net, request, options).await })
    }
}

/// One plugin request: resolved once, every address checked, sent to the checked addresses,
/// the response capped at `max_response_bytes`.
async fn send<N: Network>(
    policy: &EgressPolicy,
    plugin: &str,
    net: &N,
    request: http::Request<WasiBody>,
    options: Option<RequestOptions>,
) -> Result<Response, HttpError> {
    let uri = request.uri().clone();
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let default_port = if tls { 443 } else { 80 };
    let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
    let host = authority.host().to_owned();
    let port = authority.port_u16().unwrap_or(default_port);
    let targets = policy
        .resolve(net, &host, port, default_port)
        .await
        .map_err(|denied| {
            tracing::warn!(plugin, url = shown(&uri), %denied, "HTTP request denied");
            match denied {
                Denied::Unresolved(_) => HttpError::DnsError {
                    rcode: Some("no address".into()),
                    info_code: None,
                },
                Denied::DnsTimeout(..) => HttpError::DnsTimeout,
                _ => HttpError::HttpRequestDenied,
            }
        })?;
    let options = clamp(options, policy.timeout);
    let tls = match tls {
        false => None,
        true => Some(
            policy
                .trust
                .client_config()
                .ok_or(HttpError::ConfigurationError)?,
        ),
    };
    let (response, io) =
        http_client::send(net, request, &targets, &normalise(&host), tls, options).await?;
    let limit = policy.max_response_bytes;
    // A response that announces a body over the cap is refused before the plugin reads any of
    // it, with the error code the plugin can tell apart (a cap hit while streaming reaches the
    // guest only as a failed read).
    if let Some(length) = response
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        && length > limit as u64
    {
        tracing::warn!(
            plugin,
            url = shown(&uri),
            length,
            limit,
            "HTTP response body over max_response_bytes: refused"
        );
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

    /// One row per special-purpose block: an address inside it (and its edges where useful),
    /// with the block named in the refusal, or `None` for an address that is public.
    const CLASSIFIED: &[(&str, Option<&str>)] = &[
        // IPv4 special-purpose registry, blocks not globally reachable.
        ("0.0.0.0", Some("this network")),
        ("0.255.255.255", Some("this network")),
        ("1.0.0.0", None),
        ("9.255.255.255", None),
        ("10.0.0.0", Some("private-use 10.")),
        ("10.255.255.255", Some("private-use 10.")),
        ("11.0.0.0", None),
        ("100.63.255.255", None),
        ("100.64.0.0", Some("CGNAT")),
        ("100.127.255.255", Some("CGNAT")),
        ("100.128.0.0", None),
        ("127.0.0.1", Some("loopback")),
        ("127.255.255.255", Some("loopback")),
        ("169.254.169.254", Some("link-local")),
        ("169.253.255.255", None),
        ("169.255.0.0", None),
        ("172.15.255.255", None),
        ("172.16.0.0", Some("private-use 172.")),
        ("172.31.255.255", Some("private-use 172.")),
        ("172.32.0.0", None),
        ("191.255.255.255", None),
        ("192.0.0.0", Some("IETF protocol assignments")),
        ("192.0.0.8", Some("IETF protocol assignments")),
        ("192.0.0.9", Some("IETF protocol assignments")),
        ("192.0.0.10", Some("IETF protocol assignments")),
        ("192.0.0.170", Some("IETF protocol assignments")),
        ("192.0.0.255", Some("IETF protocol assignments")),
        ("192.0.1.0", None),
        ("192.0.2.1", Some("TEST-NET-1")),
        ("192.0.3.0", None),
        ("192.31.196.1", None),  // AS112-v4: globally reachable
        ("192.52.193.1", None),  // AMT: globally reachable
        ("192.175.48.1", None),  // AS112 direct delegation: globally reachable
        ("192.88.98.255", None), // below the deprecated 6to4 relay block
        ("192.88.99.1", Some("6to4 relay")),
        ("192.88.100.0", None),
        ("192.168.1.1", Some("private-use 192.168")),
        ("198.17.255.255", None),
        ("198.18.0.0", Some("benchmarking")),
        ("198.19.255.255", Some("benchmarking")),
        ("198.20.0.0", None),
        ("198.51.100.7", Some("TEST-NET-2")),
        ("203.0.113.7", Some("TEST-NET-3")),
        ("223.255.255.255", None),
        ("224.0.0.1", Some("multicast")),
        ("239.255.255.255", Some("multicast")),
        ("240.0.0.0", Some("reserved 240")),
        ("255.255.255.254", Some("reserved 240")),
        ("255.255.255.255", Some("limited broadcast")),
        ("93.184.216.34", None),
        // IPv6 special-purpose registry.
        ("::", Some("unspecified")),
        ("::1", Some("loopback ::1")),
        ("::ffff:169.254.169.254", Some("link-local 169.254")),
        ("::ffff:198.18.0.1", Some("benchmarking")),
        ("::ffff:93.184.216.34", None),
        ("::ffff:0:5db8:d822", Some("IPv4-translated")),
        ("::ffff:0:a9fe:a9fe", Some("IPv4-translated")),
        ("64:ff9b::5db8:d822", None),
        ("64:ff9b::a9fe:a9fe", Some("link-local 169.254")),
        ("64:ff9b::6440:1", Some("CGNAT")),
        ("64:ff9b::c612:1", Some("benchmarking")),
        ("64:ff9b:1::5db8:d822", Some("local-use NAT64")),
        (
            "64:ff9b:1:ffff:ffff:ffff:ffff:ffff",
            Some("local-use NAT64"),
        ),
        ("100::1", Some("discard-only")),
        ("100::ffff:ffff:ffff:ffff", Some("discard-only")),
        ("100:0:0:1::1", Some("dummy prefix")),
        ("2001::1", Some("Teredo")),
        ("2001:0:4136:e378::1", Some("Teredo")),
        ("2001:1::1", None), // PCP anycast
        ("2001:1::2", None), // TURN anycast
        ("2001:1::3", None), // DNS-SD SRP anycast
        ("2001:1::4", Some("IETF protocol assignments 2001::/23")),
        ("2001:2::1", Some("benchmarking 2001:2::/48")),
        ("2001:3::1", None),     // AMT
        ("2001:4:112::1", None), // AS112-v6
        ("2001:4:113::1", Some("IETF protocol assignments 2001::/23")),
        ("2001:10::1", Some("ORCHID")),
        ("2001:1f:ffff::1", Some("ORCHID")),
        ("2001:20::1", None),      // ORCHIDv2
        ("2001:2f:ffff::1", None), // ORCHIDv2
        ("2001:30::1", None),      // drone remote ID tags
        ("2001:3f:ffff::1", None), // drone remote ID tags
        ("2001:40::1", Some("IETF protocol assignments 2001::/23")),
        (
            "2001:1ff:ffff::1",
            Some("IETF protocol assignments 2001::/23"),
        ),
        ("2001:200::1", None), // past 2001::/23
        ("2001:db8::1", Some("documentation 2001:db8")),
        ("2001:db9::1", None),
        ("2002:5db8:d822::1", None),
        ("2002:a9fe:a9fe::1", Some("link-local 169.254")),
        ("2002:a00:1::1", Some("private-use 10.")),
        ("2002:6440:1::1", Some("CGNAT")),
        ("2620:4f:8000::1", None), // AS112 direct delegation
        ("3fff::1", Some("documentation 3fff")),
        ("3fff:fff:ffff::1", Some("documentation 3fff")),
        ("3fff:1000::1", None),
        ("5f00::1", Some("SRv6")),
        ("fc00::1", Some("unique local")),
        ("fdff:ffff::1", Some("unique local")),
        ("fe80::1", Some("link-local fe80")),
        ("febf:ffff::1", Some("link-local fe80")),
        ("fec0::1", Some("site-local")),
        ("ff02::1", Some("multicast ff00")),
        // Outside every block: global unicast (2000::/3) or not.
        ("2606:4700::1111", None),
        ("1fff:ffff::1", Some("not global unicast")),
        ("4000::1", Some("not global unicast")),
        ("::a9fe:a9fe", Some("not global unicast")), // IPv4-compatible, deprecated
        ("::5db8:d822", Some("not global unicast")),
    ];

    #[test]
    fn special_purpose_blocks_are_refused_by_name() {
        for &(address, expected) in CLASSIFIED {
            let got = refused_block(ip(address));
            match expected {
                None => assert_eq!(got, None, "{address} is public"),
                Some(part) => assert!(
                    got.is_some_and(|block| block.contains(part)),
                    "{address}: expected a block containing {part:?}, got {got:?}"
                ),
            }
            assert_eq!(is_public(ip(address)), expected.is_none(), "{address}");
        }
    }

    #[test]
    fn allowed_name_pointing_inside_is_refused() {
        let p = policy(&["api.example.com:443", "*.example.net"]);
        for &(inside, expected) in CLASSIFIED {
            if expected.is_none() {
                continue;
            }
            for host in ["api.example.com", "svc.example.net"] {
                assert!(
                    matches!(
                        p.check(host, 443, 443, &[ip("93.184.216.34"), ip(inside)]),
                        Err(Denied::Internal { .. })
                    ),
                    "{host} -> {inside} should be refused"
                );
            }
        }
    }

    #[test]
    fn reserved_addresses_pass_when_listed_as_literals() {
        let p = policy(&[
            "198.18.0.1:8080",
            "100.64.0.7",
            "[64:ff9b:1::a00:1]:80",
            "[2001:2::1]:*",
        ]);
        for (host, port, resolved) in [
            ("198.18.0.1", 8080, "198.18.0.1"),
            ("100.64.0.7", 80, "100.64.0.7"),
            ("[64:ff9b:1::a00:1]", 80, "64:ff9b:1::a00:1"),
            ("[2001:2::1]", 9000, "2001:2::1"),
        ] {
            assert_eq!(
                p.check(host, port, 80, &[ip(resolved)]),
                Ok(vec![SocketAddr::new(ip(resolved), port)]),
                "{host}"
            );
        }
        // The literal must be the address itself, not another spelling of what it carries.
        assert!(
            p.check("[64:ff9b::c612:1]", 8080, 80, &[ip("64:ff9b::c612:1")])
                .is_err()
        );
    }

    /// NAT64 and 6to4 addresses are judged by the IPv4 address they carry, but the connection
    /// goes to the address that was resolved; an IPv4-mapped one is its IPv4 address.
    #[test]
    fn targets_are_the_resolved_addresses() {
        let p = policy(&["api.example.com"]);
        let resolved = [
            ip("64:ff9b::5db8:d822"),
            ip("2002:5db8:d822::1"),
            ip("::ffff:93.184.216.34"),
            ip("2606:4700::1111"),
            ip("64:ff9b::5db8:d822"),
        ];
        let targets = p
            .check("api.example.com", 443, 443, &resolved)
            .expect("allowed");
        let expected: Vec<SocketAddr> = [
            "[64:ff9b::5db8:d822]:443",
            "[2002:5db8:d822::1]:443",
            "93.184.216.34:443",
            "[2606:4700::1111]:443",
        ]
        .iter()
        .map(|s| s.parse().expect("addr"))
        .collect();
        assert_eq!(targets, expected, "in order, once each");
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
            Ok(vec!["127.0.0.1:8080".parse().expect("addr")])
        );
        assert!(p.check("127.0.0.1", 8081, 80, &[ip("127.0.0.1")]).is_err());
        assert!(p.check("[::1]", 9000, 80, &[ip("::1")]).is_ok());
        assert_eq!(
            p.check("localhost", 7000, 80, &[ip("::1"), ip("127.0.0.1")]),
            Ok(vec![
                "[::1]:7000".parse().expect("addr"),
                "127.0.0.1:7000".parse().expect("addr")
            ])
        );
        assert!(p.check("localhost", 7000, 80, &[ip("10.0.0.1")]).is_err());
        assert!(
            p.check("169.254.169.254", 80, 80, &[ip("169.254.169.254")])
                .is_err()
        );
    }

    /// Log lines show where a request went, never the path, query or user info it carried.
    #[test]
    fn logged_urls_show_scheme_host_and_port_only() {
        for (url, logged) in [
            (
                "https://user:pw@api.example.com/v1/items?token=s3cret#frag",
                "https://api.example.com:443",
            ),
            (
                "http://169.254.169.254/latest/meta-data/iam?x=1",
                "http://169.254.169.254:80",
            ),
            ("http://[::1]:8080/a/b?key=k", "http://[::1]:8080"),
            ("HTTP://Example.COM:81", "http://example.com:81"),
        ] {
            let uri: http::Uri = url.parse().expect("uri");
            assert_eq!(shown(&uri), logged, "{url}");
        }
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

    /// A scripted network: names resolve to the listed addresses (or the lookup hangs), every
    /// connect is recorded, and goes to `redirect` when set, else to the address itself;
    /// connects to addresses in `hang` never complete.
    #[derive(Default)]
    struct Scripted {
        answers: Vec<(&'static str, Vec<IpAddr>)>,
        hang_lookup: bool,
        hang: Vec<SocketAddr>,
        redirect: Option<SocketAddr>,
        attempts: std::sync::Mutex<Vec<SocketAddr>>,
    }

    impl Scripted {
        fn attempts(&self) -> Vec<SocketAddr> {
            self.attempts.lock().expect("lock").clone()
        }
    }

    impl Network for Scripted {
        async fn lookup(&self, host: &str, _port: u16) -> std::io::Result<Vec<IpAddr>> {
            if self.hang_lookup {
                std::future::pending::<()>().await;
            }
            Ok(self
                .answers
                .iter()
                .find(|(name, _)| *name == host)
                .map(|(_, ips)| ips.clone())
                .unwrap_or_default())
        }

        async fn connect(&self, addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
            self.attempts.lock().expect("lock").push(addr);
            if self.hang.contains(&addr) {
                std::future::pending::<()>().await;
            }
            tokio::net::TcpStream::connect(self.redirect.unwrap_or(addr)).await
        }
    }

    /// An HTTP server on 127.0.0.1 that answers every request `200 ok`.
    async fn serve_ok() -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = socket
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        addr
    }

    fn get(url: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::<bytes::Bytes>::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        http::Request::get(url).body(body).expect("request")
    }

    /// Sends `url` through the hooks of a plugin allowed `hosts`, on `net`.
    async fn fetch(
        hosts: &[&str],
        timeout: Duration,
        net: &Arc<Scripted>,
        url: &str,
    ) -> Result<String, HttpError> {
        let hosts: Vec<String> = hosts.iter().map(|s| s.to_string()).collect();
        let policy = EgressPolicy::new(&hosts, timeout, 1024).expect("valid");
        let mut hooks = EgressHooks::with_network(Arc::new(policy), "test".into(), net.clone());
        let sent = hooks.send_request(get(url), None, Box::new(async { Ok(()) }));
        let (response, _io) = Box::into_pin(sent).await?;
        let body = response.into_body().collect().await?.to_bytes();
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A name resolving to a dead address first and a live one second still connects: the
    /// addresses are tried in the resolver's order.
    #[tokio::test]
    async fn every_resolved_address_is_tried_in_order() {
        let live = serve_ok().await;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead = closed.local_addr().expect("addr");
        drop(closed);
        let net = Arc::new(Scripted {
            answers: vec![("localhost", vec![ip("::1"), ip("127.0.0.1")])],
            ..Default::default()
        });
        let url = format!("http://localhost:{}/", live.port());
        let host = format!("localhost:{}", live.port());
        let body = fetch(&[&host], Duration::from_secs(2), &net, &url).await;
        assert_eq!(body.expect("second address answers"), "ok");
        assert_eq!(
            net.attempts(),
            [SocketAddr::new(ip("::1"), live.port()), live],
            "::1 first (nothing listens there), then 127.0.0.1"
        );

        // Nothing listening anywhere: the last address's error.
        let net = Arc::new(Scripted {
            answers: vec![("localhost", vec![ip("::1"), ip("127.0.0.1")])],
            ..Default::default()
        });
        let url = format!("http://localhost:{}/", dead.port());
        let host = format!("localhost:{}", dead.port());
        let failed = fetch(&[&host], Duration::from_secs(2), &net, &url).await;
        assert!(
            matches!(failed, Err(HttpError::ConnectionRefused)),
            "{failed:?}"
        );
        assert_eq!(net.attempts().len(), 2);
    }

    /// Each address gets its own connect timeout: one that never answers costs that timeout,
    /// then the next is tried.
    #[tokio::test]
    async fn a_silent_address_times_out_and_the_next_is_tried() {
        let live = serve_ok().await;
        let net = Arc::new(Scripted {
            answers: vec![(
                "api.example.com",
                vec![ip("93.184.216.34"), ip("93.184.216.35")],
            )],
            hang: vec![SocketAddr::new(ip("93.184.216.34"), 80)],
            redirect: Some(live),
            ..Default::default()
        });
        let started = std::time::Instant::now();
        let body = fetch(
            &["api.example.com"],
            Duration::from_millis(300),
            &net,
            "http://api.example.com/",
        )
        .await;
        assert_eq!(body.expect("second address answers"), "ok");
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(
            net.attempts(),
            [
                SocketAddr::new(ip("93.184.216.34"), 80),
                SocketAddr::new(ip("93.184.216.35"), 80)
            ]
        );
    }

    /// A lookup that never answers fails with `DNS-timeout` after the DNS timeout, and nothing
    /// is connected to.
    #[tokio::test]
    async fn a_hanging_dns_lookup_times_out() {
        let net = Arc::new(Scripted {
            hang_lookup: true,
            ..Default::default()
        });
        let started = std::time::Instant::now();
        let failed = fetch(
            &["api.example.com"],
            Duration::from_millis(200),
            &net,
            "http://api.example.com/",
        )
        .await;
        assert!(matches!(failed, Err(HttpError::DnsTimeout)), "{failed:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(net.attempts().is_empty());
        assert_eq!(
            EgressPolicy::new(&[], Duration::from_secs(60), 1)
                .expect("valid")
                .dns_timeout,
            DNS_TIMEOUT,
            "the DNS timeout is its own, not http_timeout_ms"
        );
    }

    /// A name resolving to NAT64 and 6to4 addresses of a public IPv4 address: the connection
    /// goes to the IPv6 addresses that were resolved, never to the IPv4 address they carry.
    #[tokio::test]
    async fn connections_go_to_the_resolved_address_not_the_embedded_one() {
        let live = serve_ok().await;
        for resolved in ["64:ff9b::5db8:d822", "2002:5db8:d822::1"] {
            let net = Arc::new(Scripted {
                answers: vec![("api.example.com", vec![ip(resolved)])],
                redirect: Some(live),
                ..Default::default()
            });
            let body = fetch(
                &["api.example.com"],
                Duration::from_secs(2),
                &net,
                "http://api.example.com/",
            )
            .await;
            assert_eq!(body.expect("answered"), "ok");
            assert_eq!(net.attempts(), [SocketAddr::new(ip(resolved), 80)]);
        }
    }

    /// A refused address (a name pointing into a reserved block) makes no connection at all;
    /// a name not listed is not even looked up.
    #[tokio::test]
    async fn refused_requests_never_connect() {
        let net = Arc::new(Scripted {
            answers: vec![
                (
                    "api.example.com",
                    vec![ip("93.184.216.34"), ip("198.18.0.1")],
                ),
                ("other.example.com", vec![ip("93.184.216.34")]),
            ],
            ..Default::default()
        });
        for url in [
            "http://api.example.com/",
            "http://other.example.com/",
            "http://198.18.0.1/",
        ] {
            let failed = fetch(&["api.example.com"], Duration::from_secs(1), &net, url).await;
            assert!(
                matches!(failed, Err(HttpError::HttpRequestDenied)),
                "{url}: {failed:?}"
            );
        }
        assert!(net.attempts().is_empty());
    }
}
